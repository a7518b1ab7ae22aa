"""autoquant: pick, per Linear layer, the fastest quantization for the shapes the model actually sees.

    model = torchao.autoquant(torch.compile(model, mode="max-autotune"))
    model(x)        # first call: record shapes, benchmark candidates, swap weights, then run compiled

1. Every selected Linear weight becomes an ``AutoQuantRecordingWeight`` that logs the (shape, dtype) of
   each activation it multiplies (and keeps one example of each).
2. For each layer and logged shape, each candidate (float, int8 weight-only, int8 dynamic, int4 weight-only
   with groups 64 / 128) is timed on a one-layer module, compiled the way the model runs; times go to
   AUTOQUANT_CACHE, so a second run with the same cache measures nothing.
3. The candidate with the least time weighted by how often each shape occurred wins; with ``min_sqnr``
   candidates whose output SQNR against float on the recorded activation is lower are skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from torchao.kernels.timing import benchmark_model
from torchao.quant_api.apply import default_filter_fn, quantize_
from torchao.quant_api.autoquant_cache import AUTOQUANT_CACHE, cache_key, measured_here, usable_timings
from torchao.quant_api.configs import (
    WeightConfig,
    int4_weight_only,
    int8_dynamic_activation_int8_weight,
    int8_weight_only,
)

__all__ = ["autoquant", "AutoQuantRecordingWeight", "DEFAULT_CANDIDATES", "CANDIDATES", "AutoQuantPlan",
           "AutoQuantCandidate", "AQDefaultLinearWeight", "AQWeightOnlyQuantizedLinearWeight",
           "AQWeightOnlyQuantizedLinearWeight2", "AQWeightOnlyQuantizedLinearWeight3",
           "AQInt8DynamicallyQuantizedLinearWeight", "AQInt4G32WeightOnlyQuantizedLinearWeight",
           "AQInt4G64WeightOnlyQuantizedLinearWeight", "AQInt4G128WeightOnlyQuantizedLinearWeight",
           "AQInt4G256WeightOnlyQuantizedLinearWeight", "DEFAULT_AUTOQUANT_CLASS_LIST",
           "DEFAULT_INT4_AUTOQUANT_CLASS_LIST"]

#: every candidate autoquant knows: name -> config factory (None: keep the float weight)
CANDIDATES: Dict[str, Optional[Callable[[], WeightConfig]]] = {
    "float": None,
    "int8wo": int8_weight_only,
    "int8dq": int8_dynamic_activation_int8_weight,
    **{f"int4wo-{g}": (lambda g=g: int4_weight_only(group_size=g)) for g in (32, 64, 128, 256)},
}
#: the candidates tried when none are named
DEFAULT_CANDIDATES = {n: CANDIDATES[n] for n in ("float", "int8wo", "int8dq", "int4wo-64", "int4wo-128")}


class AutoQuantCandidate:
    """One autoquant choice under the seed era's class names (``AQ*LinearWeight``): its candidate
    ``name`` in CANDIDATES; ``from_float(weight)`` quantizes a weight the way the candidate does."""

    name = "float"

    @classmethod
    def from_float(cls, weight: torch.Tensor) -> torch.Tensor:
        make = CANDIDATES[cls.name]
        return weight if make is None else make()(weight)


def _candidate(class_name: str, name: str) -> type:
    return type(class_name, (AutoQuantCandidate,), {"name": name, "__doc__": f"autoquant candidate {name!r}."})


AQDefaultLinearWeight = _candidate("AQDefaultLinearWeight", "float")
AQWeightOnlyQuantizedLinearWeight = _candidate("AQWeightOnlyQuantizedLinearWeight", "int8wo")
# the era's int8 weight-only variants differed in kernel; ours have one int8 weight-only kernel per device
AQWeightOnlyQuantizedLinearWeight2 = _candidate("AQWeightOnlyQuantizedLinearWeight2", "int8wo")
AQWeightOnlyQuantizedLinearWeight3 = _candidate("AQWeightOnlyQuantizedLinearWeight3", "int8wo")
AQInt8DynamicallyQuantizedLinearWeight = _candidate("AQInt8DynamicallyQuantizedLinearWeight", "int8dq")
AQInt4G32WeightOnlyQuantizedLinearWeight = _candidate("AQInt4G32WeightOnlyQuantizedLinearWeight", "int4wo-32")
AQInt4G64WeightOnlyQuantizedLinearWeight = _candidate("AQInt4G64WeightOnlyQuantizedLinearWeight", "int4wo-64")
AQInt4G128WeightOnlyQuantizedLinearWeight = _candidate("AQInt4G128WeightOnlyQuantizedLinearWeight", "int4wo-128")
AQInt4G256WeightOnlyQuantizedLinearWeight = _candidate("AQInt4G256WeightOnlyQuantizedLinearWeight", "int4wo-256")

DEFAULT_AUTOQUANT_CLASS_LIST = [AQDefaultLinearWeight, AQInt8DynamicallyQuantizedLinearWeight,
                                AQWeightOnlyQuantizedLinearWeight, AQWeightOnlyQuantizedLinearWeight2,
                                AQWeightOnlyQuantizedLinearWeight3]
DEFAULT_INT4_AUTOQUANT_CLASS_LIST = [AQDefaultLinearWeight, AQInt8DynamicallyQuantizedLinearWeight,
                                     AQInt4G64WeightOnlyQuantizedLinearWeight]


def _candidate_names(candidates) -> List[str]:
    """Candidate names from names or AutoQuantCandidate classes, in order, without repeats."""
    names = [c.name if isinstance(c, type) and issubclass(c, AutoQuantCandidate) else c for c in candidates]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise ValueError(f"unknown autoquant candidates {unknown}; known: {list(CANDIDATES)} or the AQ*LinearWeight "
                         "classes")
    return list(dict.fromkeys(names))


class AutoQuantRecordingWeight(torch.Tensor):
    """A float weight that logs the activations F.linear multiplies it with (shape, dtype, one example)."""

    @staticmethod
    def __new__(cls, weight: torch.Tensor):
        return torch.Tensor._make_subclass(cls, weight.detach(), False)

    def __init__(self, weight: torch.Tensor):
        self.shape_counts: Counter = Counter()
        self.examples: Dict[Tuple, torch.Tensor] = {}

    def float_weight(self) -> torch.Tensor:
        with torch._C.DisableTorchFunctionSubclass():
            return self.detach().as_subclass(torch.Tensor)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and isinstance(args[1], cls):
            x, w = args[0], args[1]
            key = (tuple(x.shape), x.dtype)
            w.shape_counts[key] += 1
            w.examples.setdefault(key, x.detach().clone())
            return F.linear(x, w.float_weight(), *args[2:], **kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)


def _median_ms(module: Callable, x: torch.Tensor) -> float:
    """The default timer: median wall time of ``module(x)`` over 10 runs after two warm-ups, in ms."""
    return benchmark_model(module, 10, x)


@dataclass
class LayerChoice:
    """What autoquant decided for one layer, and why."""

    name: str
    shapes: Dict[Tuple, int]
    times: Dict[str, float]
    sqnr: Dict[str, float]
    chosen: str


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    noise = (ref - out).norm()
    return float("inf") if noise == 0 else (20 * torch.log10(ref.norm() / noise)).item()


@dataclass
class AutoQuantPlan:
    """The state autoquant keeps on the model: recorded layers, candidates and, once finalized, choices."""

    model: nn.Module
    layers: Dict[str, nn.Linear]
    candidates: Dict[str, Optional[Callable[[], WeightConfig]]]
    compile_kwargs: Optional[dict]
    min_sqnr: Optional[float]
    timer: Callable
    quiet: bool
    choices: List[LayerChoice] = field(default_factory=list)
    timings: Dict[str, Dict] = field(default_factory=dict)  # per device: usable AUTOQUANT_CACHE milliseconds

    def _known(self, device: torch.device) -> Dict:
        if str(device) not in self.timings:
            self.timings[str(device)] = usable_timings(device)
        return self.timings[str(device)]

    def _layer_module(self, layer: nn.Linear, name: str) -> nn.Module:
        weight = layer.weight.float_weight()
        module = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                           device=weight.device, dtype=weight.dtype)
        module.weight = nn.Parameter(weight.clone(), requires_grad=False)
        if layer.bias is not None:
            module.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False)
        factory = self.candidates[name]
        if factory is not None:
                quantize_(module, factory(), strict=True)
        return module

    def _measure(self, fqn: str, layer: nn.Linear) -> LayerChoice:
        weight = layer.weight
        shapes = dict(weight.shape_counts)
        times: Dict[str, float] = {}
        sqnr: Dict[str, float] = {}
        reference = {k: F.linear(x, weight.float_weight(), layer.bias) for k, x in weight.examples.items()}
        for name, factory in self.candidates.items():
            if factory is not None and factory().unsupported_reason(weight.float_weight()):
                continue
            module = None
            total = 0.0
            known = self._known(weight.device)
            for (shape, dtype), count in shapes.items():
                key = cache_key(name, shape, weight.shape, None if layer.bias is None else layer.bias.shape, dtype)
                if key not in known:
                    module = self._runner(layer, name) if module is None else module
                    known[key] = self.timer(module, weight.examples[(shape, dtype)])
                    AUTOQUANT_CACHE[key] = measured_here(known[key], weight.device)
                total += count * known[key]
            times[name] = total
            if self.min_sqnr is not None and factory is not None:
                quantized = self._layer_module(layer, name)
                with torch.no_grad():
                    sqnr[name] = min(_sqnr(reference[k], quantized(x)) for k, x in weight.examples.items())
        allowed = [n for n in times if n == "float" or self.min_sqnr is None or sqnr.get(n, float("inf")) >= self.min_sqnr]
        chosen = min(allowed, key=times.get)
        return LayerChoice(fqn, shapes, times, sqnr, chosen)

    def _runner(self, layer: nn.Linear, name: str) -> Callable:
        module = self._layer_module(layer, name)
        if self.compile_kwargs is None:
            return module
        torch._dynamo.reset()
        return torch.compile(module, **self.compile_kwargs)

    def finalize(self) -> List[LayerChoice]:
        """Benchmark (or read AUTOQUANT_CACHE), choose per layer, swap the weights; returns the choices."""
        unseen = [n for n, m in self.layers.items() if not m.weight.shape_counts]
        bar = tqdm(self.layers.items(), desc="autoquant", unit="layer", disable=self.quiet)
        choices = [self._measure(n, m) for n, m in bar if n not in unseen]
        new_weights = {}
        for choice in choices:
            layer = self.layers[choice.name]
            new_weights[choice.name] = self._layer_module(layer, choice.chosen).weight
        for name, layer in self.layers.items():  # all or nothing: swap only after every measurement
            layer.weight = new_weights.get(name, nn.Parameter(layer.weight.float_weight(), requires_grad=False))
        self.choices = choices
        if not self.quiet:
            print(summary_table(choices, unseen))
        return choices


def summary_table(choices: Sequence[LayerChoice], unseen: Sequence[str] = ()) -> str:
    """One row per layer: activation shapes (count), chosen candidate, weighted time and SQNR of each."""
    names = list(dict.fromkeys(n for c in choices for n in c.times))
    lines = ["| layer | shapes | chosen | " + " | ".join(f"{n} ms" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for c in choices:
        shapes = ", ".join(f"{tuple(s)}x{n}" for (s, _), n in c.shapes.items())
        cells = []
        for n in names:
            cell = "-" if n not in c.times else f"{c.times[n]:.3f}"
            if n in c.sqnr:
                cell += f" ({c.sqnr[n]:.0f} dB)"
            cells.append(cell)
        lines.append(f"| {c.name} | {shapes} | {c.chosen} | " + " | ".join(cells) + " |")
    for name in unseen:
        lines.append(f"| {name} | never called | float |" + " |" * len(names))
    return "\n".join(lines)


def _compile_kwargs_of(model: nn.Module) -> Tuple[nn.Module, Optional[dict]]:
    """(the original module, the torch.compile kwargs it runs under, or None for eager)."""
    from torch._dynamo.eval_frame import OptimizedModule

    if isinstance(model, OptimizedModule):
        kwargs = getattr(model, "_torchao_compile_kwargs", None)
        if kwargs is None:
            kwargs = {}
            ctx = getattr(model, "_torchdynamo_orig_callable", None)
            mode = getattr(getattr(ctx, "_torchdynamo_orig_backend", None), "mode", None)
            if mode:
                kwargs["mode"] = mode
        return model._orig_mod, kwargs
    return model, None


def autoquant(
    model: nn.Module,
    example_input=None,
    qtensor_class_list: Optional[Sequence] = None,
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    mode: Optional[dict] = None,
    manual: bool = False,
    min_sqnr: Optional[float] = None,
    quiet: bool = False,
    timer: Optional[Callable] = None,
) -> nn.Module:
    """Prepare ``model`` (plain or torch.compile'd) for automatic per-layer quantization; returns it.

    example_input: run this (a tensor, tuple of args or dict of kwargs) now to record and finalize at once;
        otherwise the first call of the returned model does it.
    qtensor_class_list: candidates, by name (CANDIDATES) or by the era's class (DEFAULT_AUTOQUANT_CLASS_LIST,
        AQInt4G64WeightOnlyQuantizedLinearWeight, ...); default: DEFAULT_CANDIDATES.
    mode: torch.compile kwargs for timing the candidates (default: those of a compiled ``model``, eager
        for a plain one). manual: only record; call ``model.finalize_autoquant()`` to choose and swap.
    min_sqnr: skip candidates whose output SQNR (dB) against float on a recorded activation is lower.
    timer: ``timer(module, x) -> ms`` for a one-layer module and a recorded activation (default: median of
        10 runs).
    """
    names = _candidate_names(qtensor_class_list or DEFAULT_CANDIDATES)
    if "float" not in names:
        names.insert(0, "float")
    module, compile_kwargs = _compile_kwargs_of(model)
    if mode is not None:
        compile_kwargs = dict(mode)
    filter_fn = filter_fn or default_filter_fn
    layers = {n: m for n, m in module.named_modules() if isinstance(m, nn.Linear) and filter_fn(m, n)}
    for layer in layers.values():
        recording = AutoQuantRecordingWeight(layer.weight)
        del layer.weight  # held as a plain attribute while recording (a Parameter would copy it)
        layer.weight = recording
    plan = AutoQuantPlan(module, layers, {n: CANDIDATES[n] for n in names}, compile_kwargs, min_sqnr,
                         timer or _median_ms, quiet)

    previous_forward = model.__dict__.get("forward")
    eager = model.forward if module is model else module

    def finalize_autoquant() -> List[LayerChoice]:
        """Choose and swap now; later calls run the model (compiled, if it was) with the new weights."""
        if model.__dict__.get("forward") is autoquant_forward:
            if previous_forward is None:
                del model.forward
            else:
                model.forward = previous_forward
        return plan.finalize()

    def autoquant_forward(*args, **kwargs):
        with torch.no_grad():
            out = eager(*args, **kwargs)  # eager, through the recording weights
        if manual:
            return out
        finalize_autoquant()
        return model(*args, **kwargs)

    model.forward = autoquant_forward
    model.finalize_autoquant = finalize_autoquant
    model.autoquant_plan = plan
    if example_input is not None:
        args, kwargs = (example_input, {}) if isinstance(example_input, tuple) else \
            ((), example_input) if isinstance(example_input, dict) else ((example_input,), {})
        with torch.no_grad():
            eager(*args, **kwargs)
        if not manual:
            finalize_autoquant()
    return model
