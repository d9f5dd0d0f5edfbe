"""Training loggers beside metrics.jsonl: `train.loggers` (`--logger csv|tensorboard|wandb`).

metrics.jsonl is always written (`quark eval report` reads it); these add the formats other tools
read, each in the run folder so a run stays one self-contained directory:
- csv:          runs/<name>/metrics-train.csv and metrics-val.csv (a header per kind of entry)
- tensorboard:  runs/<name>/tensorboard/ via torch.utils.tensorboard (needs the `tensorboard` package)
- wandb:        runs/<name>/wandb/, always offline (air-gapped clusters; `wandb sync` uploads later)
Every logger continues a resumed run without repeating a step: entries past the checkpoint are
dropped (csv), purged (tensorboard's purge_step), or resumed by run id (wandb).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path
from typing import Any, Protocol

from quark.atomic import write_text
from quark.errors import QuarkError

LOGGERS = ("csv", "tensorboard", "wandb")


class Logger(Protocol):
    def write(self, entry: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


def parse_loggers(value: str, where: str = "train.loggers") -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    for name in names:
        if name not in LOGGERS:
            raise QuarkError(f"{where}: unknown logger {name!r} (expected some of {', '.join(LOGGERS)})")
    return list(dict.fromkeys(names))


def _scalars(entry: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in entry.items() if key not in ("kind", "step") and
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


class CsvLogger:
    def __init__(self, run_dir: Path, through_step: int) -> None:
        self.run_dir, self.through_step = Path(run_dir), through_step
        self.files: dict[str, tuple[Any, csv.DictWriter]] = {}

    def _writer(self, kind: str, fields: list[str]) -> csv.DictWriter:
        if kind not in self.files:
            path = self.run_dir / f"metrics-{kind}.csv"
            kept, header = [], None
            if path.exists():  # a resumed run: keep the rows up to the checkpoint, and their columns
                reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
                header = reader.fieldnames
                kept = [row for row in reader if float(row.get("step") or 0) <= self.through_step]
            header = list(header or fields)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            write_text(path, buffer.getvalue())
            handle = open(path, "a", encoding="utf-8", newline="")
            self.files[kind] = (handle, csv.DictWriter(handle, fieldnames=header, extrasaction="ignore"))
        return self.files[kind][1]

    def write(self, entry: dict[str, Any]) -> None:
        kind = str(entry.get("kind", "train"))
        writer = self._writer(kind, ["step", *_scalars(entry)])
        writer.writerow({"step": entry.get("step"), **_scalars(entry)})
        self.files[kind][0].flush()

    def close(self) -> None:
        for handle, _ in self.files.values():
            handle.close()


class TensorboardLogger:
    def __init__(self, run_dir: Path, through_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise QuarkError("--logger tensorboard needs the tensorboard package: pip install tensorboard "
                             "(or quark's `loggers` extra)") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=through_step + 1)

    def write(self, entry: dict[str, Any]) -> None:
        for key, value in _scalars(entry).items():
            self.writer.add_scalar(f"{entry.get('kind', 'train')}/{key}", value, int(entry["step"]))

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, through_step: int) -> None:
        try:
            import wandb
        except ImportError:
            raise QuarkError("--logger wandb needs the wandb package: pip install wandb (or quark's `loggers` "
                             "extra); it runs offline") from None
        self.wandb = wandb
        run_id = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]  # same run across resumes
        self.run = wandb.init(mode="offline", dir=str(run_dir), project="quark", name=Path(run_dir).name, id=run_id,
                              resume="allow")

    def write(self, entry: dict[str, Any]) -> None:
        self.run.log({f"{entry.get('kind', 'train')}/{key}": value for key, value in _scalars(entry).items()},
                     step=int(entry["step"]))

    def close(self) -> None:
        self.run.finish()


_CLASSES = {"csv": CsvLogger, "tensorboard": TensorboardLogger, "wandb": WandbLogger}


class RunLogs:
    """Every log of one run, written together: metrics.jsonl's MetricsLog and the chosen loggers."""

    def __init__(self, logs: list[Logger]) -> None:
        self.logs = logs

    @classmethod
    def open(cls, first: Logger, names: str, run_dir: Path, through_step: int) -> RunLogs:
        opened: list[Logger] = [first]
        try:
            for name in parse_loggers(names):
                opened.append(_CLASSES[name](run_dir, through_step))
        except BaseException:
            for log in opened:
                log.close()
            raise
        return cls(opened)

    def write(self, entry: dict[str, Any]) -> None:
        for log in self.logs:
            log.write(entry)

    def close(self) -> None:
        for log in self.logs:
            log.close()
