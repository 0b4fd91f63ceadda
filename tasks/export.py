"""mode=export: a checkpoint as an ONNX file and a `torch.export` program, checked for parity.

    python train.py mode=export ckpt_path=CKPT

Writes `model.onnx`, `model.pt2` and `model.json` into the run directory. The network is first
re-parameterised where its backbone supports it (`timm.utils.reparameterize_model`: UniRepLKNet's
dilated branches, RepVGG-style blocks, fused norms). model.json records what a user must do
around the network: the input shapes, the preprocessing (channels, mean/std, the datamodule's
test-time transform), the class names, what each output means, and the parity check: the ONNX
file run by ONNX Runtime against the eager network on the first test batch, passing when
max|onnx - eager| <= 1e-4 * max|eager|. A network that does not export is reported with the
operator that stopped the exporter.
"""

import json
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from .predict import build_datamodule, load_task

#: Parity passes when max |onnx - eager| <= PARITY_TOLERANCE * max |eager| + PARITY_FLOOR.
PARITY_TOLERANCE = 1e-4
#: float32 rounding inside a deep network does not shrink with its output: a random-weight
#: classifier's logits are ~0.05 while its activations are ~1, and differ by ~6e-6 between two
#: correct float32 runtimes (mobilenetv2_tvconv_010).
PARITY_FLOOR = 1e-5

# operator names as torch.export, the ONNX translator and ONNX Runtime write them:
# `aten.fft_rfft2.default`, `aten::upsample_bicubic2d`, `OpOverload(op='aten.foo', ...)`,
# `torchvision::deform_conv2d`, `onnx::Foo`
OPERATOR = re.compile(r"\b((?:aten|prims|torchvision|onnx|zoo)(?:\.|::)[A-Za-z_][\w.]*)")


class ExportFailed(RuntimeError):
    """The exporter refused the network; `operator` is the op that stopped it, when named."""

    def __init__(self, stage: str, error: BaseException):
        self.stage, self.operator = stage, unsupported_operator(error)
        self.reason = f"{type(error).__name__}: {first_lines(str(error))}"
        where = f" at operator {self.operator}" if self.operator else ""
        super().__init__(f"{stage} failed{where}: {self.reason}")


def first_lines(text: str, count: int = 3, width: int = 400) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[:count])[:width]


def unsupported_operator(error: BaseException) -> str | None:
    """The operator an exporter's error names, searched through the chain of causes."""
    while error is not None:
        match = OPERATOR.search(str(error))
        if match:
            return match.group(1).removesuffix(".default")
        error = error.__cause__ or error.__context__
    return None


def export_program(
    module: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> torch.export.ExportedProgram:
    try:
        # the batch size is left to the exporter (Dim.AUTO): dynamic where the network allows
        batch = tuple({0: torch.export.Dim.AUTO} for _ in inputs)
        return torch.export.export(module, inputs, dynamic_shapes=batch, strict=False)
    except Exception as error:
        raise ExportFailed("torch.export", error) from error


def dynamic_dims(program: torch.export.ExportedProgram) -> list[list[int]]:
    """For each input of `program`, the dimensions left symbolic (any size) by the exporter."""
    inputs = set(program.graph_signature.user_inputs)
    shapes = [n.meta["val"].shape for n in program.graph.nodes if n.name in inputs]
    return [[i for i, d in enumerate(shape) if not isinstance(d, int)] for shape in shapes]


def export_onnx(program: torch.export.ExportedProgram, path: Path, input_names: list[str],
                output_names: list[str]) -> None:  # fmt: skip
    """Translate an exported program to ONNX (torch's dynamo exporter, the maintained one).

    onnxscript's graph optimiser is left off: ONNX Runtime folds constants and fuses operators
    itself when it loads a model, and the optimiser took a third of the export's time.
    """
    # the translator's optimiser logs every pass at INFO, which Hydra's logging config shows
    for name in ("onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(program, (), str(path), input_names=input_names,
                              output_names=output_names, dynamo=True, optimize=False,
                              verbose=False)  # fmt: skip
    except Exception as error:
        raise ExportFailed("ONNX export", error) from error


def flat_outputs(outputs: Any) -> list[np.ndarray]:
    return [t.detach().float().cpu().numpy() for t in tree_flatten(outputs)[0]]


def onnx_parity(path: Path, module: nn.Module, inputs: tuple[torch.Tensor, ...],
                input_names: list[str]) -> dict[str, Any]:  # fmt: skip
    """Run `path` in ONNX Runtime and `module` eagerly on `inputs`; compare every output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: t.numpy() for n, t in zip(input_names, inputs)}
    onnx_out = session.run(None, feeds)
    with torch.no_grad():
        eager = flat_outputs(module(*inputs))
    difference = max(float(np.abs(a - b).max()) for a, b in zip(eager, onnx_out))
    scale = max(float(np.abs(a).max()) for a in eager)
    return {
        "max_abs_difference": difference,
        "max_abs_output": scale,
        "relative_difference": difference / scale if scale else difference,
        "tolerance": PARITY_TOLERANCE,
        "absolute_floor": PARITY_FLOOR,
        "passed": difference <= PARITY_TOLERANCE * scale + PARITY_FLOOR,
        "batch_shape": [list(t.shape) for t in inputs],
    }


def export_network(module: nn.Module, inputs: tuple[torch.Tensor, ...], out_dir: Path,
                   input_names: list[str], output_names: list[str]) -> dict[str, Any]:  # fmt: skip
    """Re-parameterise `module`, write model.pt2 and model.onnx, check the ONNX file's parity.

    Returns the JSON record's `torch_export` and `onnx` entries: file and seconds, or the
    error and the operator that caused it.
    """
    module = timm.utils.reparameterize_model(module).eval()
    record: dict[str, Any] = {"reparameterized": True}
    started = time.perf_counter()
    try:
        program = export_program(module, inputs)
    except ExportFailed as error:
        failure = {"error": error.reason, "operator": error.operator}
        return record | {"torch_export": failure, "onnx": failure}
    torch.export.save(program, out_dir / "model.pt2")
    record["torch_export"] = {"file": "model.pt2", "seconds": time.perf_counter() - started,
                              "dynamic_dims": dynamic_dims(program)}  # fmt: skip
    started = time.perf_counter()
    try:
        export_onnx(program, out_dir / "model.onnx", input_names, output_names)
    except ExportFailed as error:
        record["onnx"] = {"error": error.reason, "operator": error.operator}
        return record
    record["onnx"] = {"file": "model.onnx", "seconds": time.perf_counter() - started,
                      "parity": onnx_parity(out_dir / "model.onnx", module, inputs, input_names)}  # fmt: skip
    return record


def export(ckpt_path: str, out_dir: Path) -> dict[str, Any]:
    """mode=export of a checkpoint into `out_dir`; returns model.json's content."""
    task, record = load_task(ckpt_path)
    datamodule = build_datamodule(record)
    batch = next(iter(datamodule.test_dataloader()))
    inputs = tuple(t.float() for t in task.export_inputs(batch))
    outputs = task.export_outputs()
    input_names = ["image", "features"][: len(inputs)]
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "mode": "export",
        "checkpoint": str(ckpt_path),
        "task": task.name,
        "backbone": task.hparams.backbone,
        "inputs": {
            n: {"shape": list(t.shape), "dtype": "float32"} for n, t in zip(input_names, inputs)
        },
        "outputs": outputs,
        "class_names": list(task.hparams.get("class_names") or []),
        "preprocessing": {k: record[k] for k in ("in_chans", "mean", "std", "transform")},
        **export_network(task.export_module(), inputs, out_dir, input_names, list(outputs)),
    }
    (out_dir / "model.json").write_text(json.dumps(result, indent=2, default=str))
    print_export(result, out_dir)
    failed = [k for k in ("torch_export", "onnx") if "error" in result[k]]
    if failed or not result["onnx"]["parity"]["passed"]:
        raise RuntimeError(f"export of {ckpt_path} incomplete; see {out_dir / 'model.json'}")
    return result


def print_export(result: dict[str, Any], out_dir: Path) -> None:
    for kind in ("torch_export", "onnx"):
        entry = result[kind]
        if "error" in entry:
            print(
                f"{kind}: FAILED at {entry['operator'] or 'an unnamed operator'}: {entry['error']}"
            )
        else:
            print(f"{kind}: {out_dir / entry['file']} ({entry['seconds']:.1f} s)")
    parity = result["onnx"].get("parity")
    if parity:
        verdict = "passed" if parity["passed"] else "FAILED"
        print(f"ONNX Runtime parity {verdict}: max |onnx - eager| = "
              f"{parity['max_abs_difference']:.3g} for outputs up to {parity['max_abs_output']:.3g} "
              f"(tolerance {parity['tolerance']:g} of that + {parity['absolute_floor']:g})")  # fmt: skip
    print(f"export record: {out_dir / 'model.json'}")
