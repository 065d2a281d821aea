"""Which stored value of a study is damaged: a study edited by hand, a record cut short.

Optuna reads every attribute of a trial as JSON; one that does not parse fails the whole read
(of every trial of the study) with a bare ``JSONDecodeError``. This names it instead.
"""

from __future__ import annotations

import json

_VALUES = {
    "attribute": "SELECT s.study_name, t.number, a.key, a.value_json FROM trial_user_attributes a "
    "JOIN trials t ON a.trial_id = t.trial_id JOIN studies s ON t.study_id = s.study_id",
    "system attribute": "SELECT s.study_name, t.number, a.key, a.value_json FROM "
    "trial_system_attributes a JOIN trials t ON a.trial_id = t.trial_id "
    "JOIN studies s ON t.study_id = s.study_id",
}


def damaged_value(url: str, shown: str) -> str | None:
    """One line naming the study, trial and attribute whose stored JSON does not parse, or
    None where none is found (or the database cannot be read).

    Args:
        url: The SQLAlchemy URL of an Optuna RDB storage (with its driver).
        shown: The URL as the message shows it (password hidden).
    """
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            for kind, query in _VALUES.items():
                for study, number, key, value in connection.execute(sqlalchemy.text(query)):
                    try:
                        json.loads(value)
                    except ValueError as exc:
                        return (
                            f"storage: study {study!r}, trial {number}: its {kind} {key!r} is "
                            f"damaged (not JSON: {exc}); restore {shown} from a backup."
                        )
    except sqlalchemy.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return None
