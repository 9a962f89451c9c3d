"""A PyTorch model made elastic along the ONNX passes' knobs: heads, FFN width and depth per layer.

The layers, heads and FFN widths are the ones SimQ's structure analysis finds in the model's ONNX
export, mapped back to the PyTorch modules by their weights; a sub-network is a pruning config
(``heads.<layer>``, ``ffn.<layer>``, ``depth.<block>``): a head or neuron outside the first k
contributes nothing, a dropped layer passes its input through. After importance reordering, first-k
is what the ONNX pruning passes cut in ``first`` order, so the ONNX sub-network computes what the
PyTorch one was trained as.

A sub-network runs sliced where the model allows it: its projections multiply by the first-k
rows or columns of their weights only and a dropped layer is not run, so it costs what its size
costs (tuning's smallest, a quarter of every width in half the layers, about an eighth of the full
network's matrix work; a tuning step 0.68x the time, docs/TUNE_STEPS.md). Where the model has no
room for that (an attention module that reshapes to its configured number of heads, layers that
share weights), it runs masked: full width, the pruned heads and neurons zeroed, a dropped layer
computed and its output replaced. `use_slices` checks one against the other on a batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_ir as ir

from simq.errors import UnsupportedModelError
from simq.ir import Linear, Structure
from simq.passes import Knob, depth_knob, ffn_knob, heads_knob, knob_kind
from simq.passes.prune import in_parts, pruning_knobs

__all__ = ["ElasticLayer", "ElasticNetwork"]


def _torch() -> Any:
    import torch

    return torch


@dataclass
class ElasticLayer:
    """One transformer layer: its PyTorch projections and the module that is the whole layer.

    `q`, `k` and `v` are one module where Q, K and V come from a fused projection
    (`qkv_parts` 3); `up` holds both halves of a gated FFN (`up_parts` 2).
    """

    index: int
    heads: int
    head_size: int
    width: int
    q: Any
    k: Any
    v: Any
    out: Any
    up: Any
    down: Any
    block: Any
    block_knob: str | None
    qkv_parts: int = 1
    up_parts: int = 1


def _weight(model: ir.Model, linear: Linear) -> np.ndarray:
    """The ONNX projection's weight as (out_features, in_features), the nn.Linear layout."""
    array = model.graph.initializers[linear.weight].const_value.numpy()
    return array.T if linear.weight_layout == "in_out" else array


def _match(modules: Mapping[str, Any], model: ir.Model, linear: Linear) -> tuple[str, Any]:
    torch = _torch()
    target = torch.from_numpy(np.ascontiguousarray(_weight(model, linear)))
    for name, module in modules.items():
        if module.weight.shape == target.shape and torch.allclose(module.weight.detach().float(), target, atol=1e-6):
            return name, module
    raise UnsupportedModelError(f"no PyTorch layer matches ONNX projection {linear.node}; the export and the module disagree.")


def _common_parent(names: Iterable[str]) -> str:
    parts = [n.split(".") for n in names]
    prefix = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        prefix.append(level[0])
    return ".".join(prefix)


class ElasticNetwork:
    """Hooks on a PyTorch module that make any pruning config of its ONNX export a sub-network
    (masked until `use_slices` finds that slicing computes the same).

    Args:
        module: The PyTorch model (its parameters are reordered in place by `reorder`).
        model: Its ONNX export (the same weights), cleaned up.
        structure: The analysis of `model`.
    """

    def __init__(self, module: Any, model: ir.Model, structure: Structure) -> None:
        torch = _torch()
        self.module, self.structure = module, structure
        linears = {name: m for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
        named = dict(module.named_modules())
        blocks = {b.layer: b for b in structure.removable_blocks if b.layer is not None}
        self.layers: list[ElasticLayer] = []
        for layer in structure.layers:
            a, f = layer.attention, layer.ffn
            found = {role: _match(linears, model, lin) for role, lin in (("q", a.q), ("k", a.k), ("v", a.v), ("out", a.out), ("up", f.up), ("down", f.down))}
            parent = _common_parent(name for name, _ in found.values())
            block = blocks.get(layer.index)
            self.layers.append(
                ElasticLayer(
                    layer.index, a.num_heads, a.head_size, f.width, *(m for _, m in found.values()),
                    named.get(parent) if parent else None, depth_knob(block.index) if block is not None else None,
                    a.qkv_parts, f.up_parts,
                )
            )  # fmt: skip
        self.knobs: list[Knob] = [k for k in pruning_knobs(structure) if knob_kind(k.name) in (knob_kind(heads_knob(0)), knob_kind(ffn_knob(0)), knob_kind(depth_knob(0)))]
        self._by_name = {k.name: k for k in self.knobs}
        self._config: dict[str, Hashable] = {}
        #: Depth knobs in the order blocks are dropped (least important first; `reorder` sets it).
        self.depth_order: list[str] = [layer.block_knob for layer in self.layers[1:-1] if layer.block_knob is not None]
        #: While recording (`record_hidden`), each kept layer's output of the last forward pass.
        self.hidden: dict[int, Any] | None = None
        #: Sub-networks run sliced (else masked); `use_slices` decides.
        self.sliced = False
        self._hooks = []
        self._forwards: list[Any] = []  # modules whose forward the slicing replaced
        self._tensor_out: dict[int, bool] = {}  # per layer: its block returned a bare tensor
        for layer in self.layers:
            self._hooks.append(layer.out.register_forward_pre_hook(self._head_mask(layer)))
            self._hooks.append(layer.down.register_forward_pre_hook(self._ffn_mask(layer)))
            if layer.block is not None and layer.block_knob is not None:
                self._hooks.append(layer.block.register_forward_hook(self._skip(layer), with_kwargs=True))
            if layer.block is not None:  # after the skip: a dropped layer's output is its input
                self._hooks.append(layer.block.register_forward_hook(self._record(layer)))

    # sub-networks

    def use_slices(self, batch: Mapping[str, Any], forward) -> bool:
        """Run sub-networks sliced if that computes what masks compute on `batch` (the smallest
        sub-network's `forward` output, in eval mode, to float precision); else keep the masks.
        Slicing needs every projection to belong to one layer and the attention modules to infer
        their number of heads from the projections' width. Returns whether sub-networks run sliced."""
        torch = _torch()
        projections = [m for layer in self.layers for m in dict.fromkeys((layer.q, layer.k, layer.v, layer.out, layer.up, layer.down))]
        if len({id(m) for m in projections}) < len(projections) or not self.layers:
            return self.run_sliced(False)  # weights shared between layers (ALBERT): one module, many widths
        smallest = self.smallest(0.0, 0.0)
        previous, training = self._config, self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                self.run_sliced(False)
                self._config = {}
                forward(batch)  # the full network: which blocks return bare tensors
                self._config = smallest
                masked = forward(batch)
                self.run_sliced(True)
                try:
                    sliced = forward(batch)
                except (RuntimeError, ValueError, IndexError):  # e.g. a reshape to the configured number of heads
                    return self.run_sliced(False)
                return self.run_sliced(bool(torch.allclose(sliced, masked, rtol=1e-4, atol=1e-4)))
        finally:
            self._config = previous
            self.module.train(training)

    def run_sliced(self, on: bool) -> bool:
        """Run sub-networks sliced (or masked), without checking that the model allows it (see
        `use_slices`). Returns `on`."""
        for module in self._forwards:
            del module.forward  # back to the class's own
        self._forwards.clear()
        self.sliced = on
        if on:
            for layer in self.layers:
                heads = lambda layer=layer: self._config.get(heads_knob(layer.index), layer.heads)  # noqa: E731
                neurons = lambda layer=layer: self._config.get(ffn_knob(layer.index), layer.width)  # noqa: E731
                for projection in dict.fromkeys((layer.q, layer.k, layer.v)):
                    self._override(projection, self._sliced_linear(projection, rows=heads, unit=layer.head_size, full=layer.heads, parts=layer.qkv_parts))
                self._override(layer.out, self._sliced_linear(layer.out, columns=lambda layer=layer: heads(layer) * layer.head_size))
                self._override(layer.up, self._sliced_linear(layer.up, rows=neurons, unit=1, full=layer.width, parts=layer.up_parts))
                self._override(layer.down, self._sliced_linear(layer.down, columns=neurons))
                if layer.block is not None and layer.block_knob is not None:
                    self._override(layer.block, self._skipping(layer, layer.block.forward))
        return on

    def _override(self, module: Any, forward) -> None:
        module.forward = forward
        self._forwards.append(module)

    def _sliced_linear(self, module: Any, rows=None, unit: int = 1, full: int = 0, parts: int = 1, columns=None):
        """`module`'s forward on the first rows(), in units of `unit` (of `full` units, in each of
        `parts` blocks), or the first columns() of its weight."""
        torch = _torch()
        picks: dict[int, Any] = {}

        def forward(x):
            weight, bias = module.weight, module.bias
            if rows is not None and (k := rows()) < full:
                if parts == 1:
                    pick: Any = slice(0, k * unit)
                else:
                    pick = picks.get(k)
                    if pick is None:
                        pick = picks[k] = torch.as_tensor(in_parts(np.arange(k * unit), full * unit, parts))
                weight, bias = weight[pick], None if bias is None else bias[pick]
            if columns is not None and (k := columns()) < weight.shape[1]:
                weight = weight[:, :k]
            return torch.nn.functional.linear(x, weight, bias)

        return forward

    def _skipping(self, layer: ElasticLayer, forward):
        """The block's forward, not run when the block is dropped and returns a bare tensor."""

        def skipping(*args, **kwargs):
            if self._config.get(layer.block_knob, False) and self._tensor_out.get(layer.index):
                return args[0] if args else kwargs["hidden_states"]
            return forward(*args, **kwargs)

        return skipping

    def set(self, config: Mapping[str, Hashable]) -> None:
        """Run as the sub-network `config` (knobs left out: the full width, no layer dropped)."""
        unknown = set(config) - set(self._by_name)
        if unknown:
            raise ValueError(f"not elastic knobs: {sorted(unknown)}")
        self._config = dict(config)

    def largest(self) -> dict[str, Hashable]:
        return {k.name: k.default for k in self.knobs}

    def max_drops(self, min_depth: float) -> int:
        """How many blocks the shallowest trained network drops: it keeps at least `min_depth` of
        the layers, and never the first or the last (dropping those costs several points)."""
        return min(len(self.depth_order), int(len(self.layers) * (1 - min_depth) + 1e-9))

    def dropped(self, count: int) -> dict[str, Hashable]:
        """The depth config with the first `count` blocks of `depth_order` dropped."""
        return {name: i < count for i, name in enumerate(self.depth_order)}

    def smallest(self, min_width: float, min_depth: float = 1.0) -> dict[str, Hashable]:
        """Every width at the smallest value at least `min_width` of its full size, and the
        shallowest depth (`max_drops`): smallest in every dimension, as the sandwich rule needs."""
        config = {k.name: self._floor(k, min_width) for k in self.knobs if knob_kind(k.name) != knob_kind(depth_knob(0))}
        return config | self.dropped(self.max_drops(min_depth))

    def sample(self, rng: np.random.Generator, min_width: float, drop: float, min_depth: float = 1.0) -> dict[str, Hashable]:
        """A random sub-network of the space `simq compile` searches (widths at least `min_width`):
        each width knob uniform over its allowed values; with probability `drop`, 1 to `max_drops`
        blocks dropped (uniformly many), the least important first."""
        config: dict[str, Hashable] = {}
        for k in self.knobs:
            if knob_kind(k.name) != knob_kind(depth_knob(0)):
                allowed = [v for v in k.domain if v >= self._floor(k, min_width)]
                config[k.name] = allowed[int(rng.integers(len(allowed)))]
        deepest = self.max_drops(min_depth)
        count = int(rng.integers(1, deepest + 1)) if deepest and rng.random() < drop else 0
        return config | self.dropped(count)

    @staticmethod
    def _floor(knob: Knob, min_width: float) -> int:
        return min(v for v in knob.domain if v >= min_width * knob.default - 1e-9)

    # masks

    def _head_mask(self, layer: ElasticLayer):
        def hook(module, args):
            h = self._config.get(heads_knob(layer.index), layer.heads)
            if h >= layer.heads or self.sliced:
                return None
            x = args[0].clone()
            x[..., h * layer.head_size :] = 0
            return (x, *args[1:])

        return hook

    def _ffn_mask(self, layer: ElasticLayer):
        def hook(module, args):
            k = self._config.get(ffn_knob(layer.index), layer.width)
            if k >= layer.width or self.sliced:
                return None
            x = args[0].clone()
            x[..., k:] = 0
            return (x, *args[1:])

        return hook

    def _skip(self, layer: ElasticLayer):
        def hook(module, args, kwargs, output):
            if not self._config.get(layer.block_knob, False):
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    def _record(self, layer: ElasticLayer):
        def hook(module, args, output):
            self._tensor_out.setdefault(layer.index, not isinstance(output, tuple))
            if self.hidden is not None and not (layer.block_knob and self._config.get(layer.block_knob, False)):
                self.hidden[layer.index] = output[0] if isinstance(output, tuple) else output

        return hook

    def record_hidden(self, on: bool) -> None:
        """Start (or stop) keeping each kept layer's output in `hidden`, for hidden-state distillation."""
        self.hidden = {} if on else None

    # importance reordering

    def reorder(self, batches: Iterable[Mapping[str, Any]], forward) -> dict[int, dict[str, list[int]]]:
        """Sort every layer's heads and FFN neurons by importance, most important first, by
        permuting the weights (the function the model computes is unchanged).

        Importance (as in DESIGN.md's measured recipe): a neuron's mean |activation| times the
        norm of its column in the down projection; a head's mean per-token norm of its
        contribution after the output projection; over the calibration batches.

        Returns:
            Per layer, the order chosen (original indices), and under ``depth`` the order in
            which blocks are dropped (the mean relative change each layer makes to the residual
            stream, smallest first; the first and last layer are never dropped), for the record.
        """
        torch = _torch()
        sums: dict[int, dict[str, Any]] = {layer.index: {"heads": 0.0, "ffn": 0.0, "change": 0.0} for layer in self.layers}
        hooks = []
        for layer in self.layers:
            def block_hook(module, args, kwargs, output, layer=layer):
                # How much the layer moves the residual stream: what dropping it loses.
                hidden = (args[0] if args else kwargs["hidden_states"]).detach()
                out = (output[0] if isinstance(output, tuple) else output).detach()
                sums[layer.index]["change"] += float(((out - hidden).norm(dim=-1) / hidden.norm(dim=-1).clamp(min=1e-6)).mean())

            if layer.block is not None:
                hooks.append(layer.block.register_forward_hook(block_hook, with_kwargs=True))
            def head_hook(module, args, layer=layer):
                x = args[0].detach()  # (batch, seq, heads * head_size)
                w = module.weight.detach()  # (hidden, heads * head_size)
                parts = x.reshape(*x.shape[:-1], layer.heads, layer.head_size)
                per_head = torch.stack([(parts[..., h, :] @ w[:, h * layer.head_size : (h + 1) * layer.head_size].T).norm(dim=-1).mean() for h in range(layer.heads)])
                sums[layer.index]["heads"] = sums[layer.index]["heads"] + per_head

            def ffn_hook(module, args, layer=layer):
                x = args[0].detach()
                sums[layer.index]["ffn"] = sums[layer.index]["ffn"] + x.abs().reshape(-1, x.shape[-1]).mean(0) * module.weight.detach().norm(dim=0)

            hooks += [layer.out.register_forward_pre_hook(head_hook), layer.down.register_forward_pre_hook(ffn_hook)]
        previous = self._config
        self._config = {}
        try:
            with torch.no_grad():
                for batch in batches:
                    forward(batch)
        finally:
            for hook in hooks:
                hook.remove()
            self._config = previous
        orders: dict[Any, Any] = {}
        for layer in self.layers:
            heads = torch.argsort(torch.as_tensor(sums[layer.index]["heads"]), descending=True)
            neurons = torch.argsort(torch.as_tensor(sums[layer.index]["ffn"]), descending=True)
            self._permute(layer, heads, neurons)
            orders[layer.index] = {"heads": heads.tolist(), "ffn": neurons.tolist()}
        change = {layer.block_knob: sums[layer.index]["change"] for layer in self.layers}
        self.depth_order = sorted(self.depth_order, key=lambda name: change[name])
        orders["depth"] = list(self.depth_order)
        return orders

    @staticmethod
    def _permute(layer: ElasticLayer, heads: Any, neurons: Any) -> None:
        torch = _torch()
        columns = torch.cat([torch.arange(h * layer.head_size, (h + 1) * layer.head_size) for h in heads.tolist()])
        qkv = torch.as_tensor(in_parts(columns.numpy(), layer.heads * layer.head_size, layer.qkv_parts))
        up = torch.as_tensor(in_parts(neurons.numpy(), layer.width, layer.up_parts))
        with torch.no_grad():
            for projection in dict.fromkeys((layer.q, layer.k, layer.v)):  # one module when fused
                projection.weight.copy_(projection.weight[qkv])
                if projection.bias is not None:
                    projection.bias.copy_(projection.bias[qkv])
            layer.out.weight.copy_(layer.out.weight[:, columns])
            layer.up.weight.copy_(layer.up.weight[up])
            if layer.up.bias is not None:
                layer.up.bias.copy_(layer.up.bias[up])
            layer.down.weight.copy_(layer.down.weight[:, neurons])

    def close(self) -> None:
        """Remove the masks and slices (the module is then its plain self again)."""
        self.run_sliced(False)
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
