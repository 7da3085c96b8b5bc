"""``lcam.torch.LCAM``: Loss-Controlled Asymmetric Momentum as a ``torch.optim.Optimizer``.

For every parameter ``p`` with gradient ``∇`` (``torch.optim.SGD`` semantics, bit for bit)::

    g = ∇ + λ·p
    b = g                       (the tensor's first step)      b = μ·b + (1 − τ)·g   (later)
    d = g + μ·b if nesterov else b
    p = p − η·d

and after the step, with the batch loss ``ℓ_k`` and the epoch's running mean
``m_k = (ℓ_1 + … + ℓ_k) / k`` (f64), the next step uses ``momentum_below`` if ``ℓ_k < m_k``,
else ``momentum_above``. Both rules are lcam-core's (Rust); this module only checks the tensors
and hands their memory over (``lcam._lcam``). See docs/LCAM-SPEC.md of the lcam repository.

Usage::

    opt = LCAM.cifar10(model.parameters())           # lr 0.1, wd 5e-4, 0.9/0.95
    for epoch in range(epochs):
        opt.start_epoch()                            # resets the running mean
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step(loss)                           # the loss is required
        print(opt.epoch_stats())

Torch's param groups (per-group ``lr``, ``weight_decay``, ``dampening``, ``nesterov``), lr
schedulers and checkpoints work unchanged: ``state_dict()`` has a ``momentum_buffer`` per
parameter in ``state`` and the controller under the extra top-level key ``"lcam"``. One phase
controller drives all groups.

Under ``torch.distributed`` (a default process group initialised, or ``process_group=``), the
loss is all-reduced (mean) before the phase decision, so every rank switches at the same step.
"""
import math
import numbers

import torch
from torch.optim import Optimizer

from . import _lcam
from ._lcam import NonFiniteLossError

__all__ = ["LCAM", "NonFiniteLossError"]

STATE_FORMAT = "lcam-torch-state/1"
_DTYPES = (torch.float32, torch.float64)
_MOMENTA = ("momentum_below", "momentum_above", "initial_momentum")


def _increment_version(tensors):
    """Bumps autograd's version counters, as torch's in-place ops do: a graph that saved one of
    these tensors then refuses to backpropagate through the stale value."""
    if not tensors:
        return
    inc = getattr(getattr(torch.autograd, "graph", None), "increment_version", None)
    if inc is not None:
        inc(tensors)
    else:  # torch < 2.2
        for t in tensors:
            torch._C._increment_version(t)


class LCAM(Optimizer):
    """SGD with loss-controlled asymmetric momentum (see the module documentation).

    Args:
        params: parameters or param groups, as for any torch optimizer.
        lr: learning rate η ≥ 0.
        momentum_below: momentum of the step after a batch whose loss was below the epoch's
            running mean (in [0, 1)).
        momentum_above: momentum of the step after a batch whose loss was at or above it.
        weight_decay: coupled L2 weight decay λ ≥ 0 (added to the gradient, as SGD).
        dampening: τ in [0, 1] (not applied on a tensor's first step, as SGD).
        nesterov: Nesterov momentum (needs dampening 0 and momenta > 0).
        initial_momentum: the momentum before any loss was observed (it matters only for
            tensors that already have a buffer, e.g. after loading a checkpoint); default 0.9 as
            the authors' demo, or ``momentum_below`` when both momenta are equal (plain SGD).
        process_group: the ``torch.distributed`` group whose mean loss decides the phase;
            default: the default group when one is initialised.

    ``lr``, ``weight_decay``, ``dampening`` and ``nesterov`` may differ per param group; the
    momenta are the optimizer's (one controller). Parameters must be dense, contiguous f32 or
    f64 tensors, on the CPU or (with a build that has CUDA support) on one CUDA device, of one
    dtype and device per group; gradients dense. Anything else is a ``TypeError`` /
    ``ValueError`` naming the parameter and group, raised before anything is modified.
    """

    def __init__(self, params, lr, momentum_below, momentum_above, weight_decay=0.0,
                 dampening=0.0, nesterov=False, initial_momentum=None, *, process_group=None):
        if initial_momentum is None:
            initial_momentum = momentum_below if momentum_below == momentum_above else 0.9
        # Validates the momenta (ValueError naming the field).
        self._controller = _lcam.Controller(float(momentum_below), float(momentum_above),
                                            float(initial_momentum))
        self._process_group = process_group
        self._cuda = None
        defaults = dict(lr=lr, weight_decay=weight_decay, dampening=dampening,
                        nesterov=nesterov)
        super().__init__(params, defaults)

    # ----------------------------------------------------------------------------- presets
    @classmethod
    def cifar10(cls, params, **overrides):
        """The demo's CIFAR-10 setting: lr 0.1, weight decay 5e-4, 0.9/0.95 (below/above),
        initial momentum 0.9 (lcam-core's ``LcamConfig::cifar10``)."""
        return cls(params, **{**_lcam.preset("cifar10"), **overrides})

    @classmethod
    def cifar100(cls, params, **overrides):
        """The demo's CIFAR-100 setting: lr 0.1, weight decay 5e-4, 0.93/0.9 (below/above),
        initial momentum 0.9 (lcam-core's ``LcamConfig::cifar100``)."""
        return cls(params, **{**_lcam.preset("cifar100"), **overrides})

    # ------------------------------------------------------------------------ properties
    @property
    def momentum_below(self):
        return self._controller.momentum_below

    @property
    def momentum_above(self):
        return self._controller.momentum_above

    @property
    def initial_momentum(self):
        return self._controller.initial_momentum

    @property
    def momentum(self):
        """The momentum the next step will use (synchronises with the GPU on CUDA)."""
        if self._cuda is not None and self._cuda["groups"]:
            return self._cuda["groups"][0].epoch_stats()["momentum"]
        return self._controller.momentum()

    @property
    def phase(self):
        """The last decision: ``"below"``, ``"above"``, or ``None`` before any loss
        (synchronises with the GPU on CUDA)."""
        if self._cuda is not None and self._cuda["groups"]:
            return self._cuda["groups"][0].epoch_stats()["phase"]
        return self._controller.phase()

    # ------------------------------------------------------------------------ param groups
    def _check_group(self, group, index):
        for key in _MOMENTA + ("momentum",):
            if key in group:
                raise ValueError(
                    f"LCAM: param group {index} sets `{key}`: the momenta belong to the "
                    "optimizer (one phase controller drives all groups)")
        try:
            _lcam.validate_config(
                float(group["lr"]), float(group["weight_decay"]), self.momentum_below,
                self.momentum_above, self.initial_momentum, float(group["dampening"]),
                bool(group["nesterov"]))
        except ValueError as e:
            raise ValueError(f"LCAM: param group {index}: {e}") from None

    def add_param_group(self, param_group):
        merged = {**self.defaults, **param_group}
        self._check_group(merged, len(self.param_groups))
        super().add_param_group(param_group)

    # ------------------------------------------------------------------------------ epochs
    def start_epoch(self):
        """Starts a new epoch: the running mean is reset, the last decision carries over. A
        no-op while the current epoch observed no loss, so call it at the top of every epoch."""
        self._controller.start_epoch()
        if self._cuda is not None:
            for g in self._cuda["groups"]:
                g.start_epoch()

    def epoch_stats(self):
        """This epoch's diagnostics: ``epoch``, ``steps``, ``steps_below``, ``mean_loss``,
        ``fraction_below``, ``momentum`` (of the next step), ``phase`` (plus
        ``rejected_losses`` on CUDA). Synchronises with the GPU on CUDA."""
        if self._cuda is not None and self._cuda["groups"]:
            return self._cuda["groups"][0].epoch_stats()
        return self._controller.epoch_stats()

    # ------------------------------------------------------------------------ the check
    def _collect(self):
        """Checks every tensor before anything is modified; returns ``(device, items)`` with
        one ``(group, index, param, grad, buffer or None)`` per parameter that has a gradient."""
        device = None
        items = []
        for gi, group in enumerate(self.param_groups):
            first = None
            for pi, p in enumerate(group["params"]):
                where = f"parameter {pi} of param group {gi}"
                if p.layout != torch.strided:
                    raise TypeError(f"LCAM: {where} has layout {p.layout}: only dense "
                                    "(strided) parameters are supported")
                if p.dtype not in _DTYPES:
                    raise TypeError(f"LCAM: {where} has dtype {p.dtype}: only torch.float32 "
                                    "and torch.float64 are supported")
                if p.device.type not in ("cpu", "cuda"):
                    raise ValueError(f"LCAM: {where} is on {p.device}: only CPU and CUDA "
                                     "tensors are supported")
                if first is None:
                    first = p
                elif p.dtype != first.dtype:
                    raise TypeError(f"LCAM: mixed dtypes in param group {gi}: {where} is "
                                    f"{p.dtype}, parameter 0 is {first.dtype} (put them in "
                                    "separate groups)")
                elif p.device != first.device:
                    raise ValueError(f"LCAM: mixed devices in param group {gi}: {where} is on "
                                     f"{p.device}, parameter 0 on {first.device}")
                if device is None:
                    device = p.device
                elif p.device != device:
                    raise ValueError(f"LCAM: {where} is on {p.device}, other parameters on "
                                     f"{device}: one LCAM optimizer steps all its tensors on "
                                     "one device (the CPU or one GPU)")
                g = p.grad
                if g is None:
                    continue
                if g.layout != torch.strided:
                    raise TypeError(f"LCAM: the gradient of {where} is sparse ({g.layout}): "
                                    "LCAM needs dense gradients")
                if g.dtype != p.dtype or g.device != p.device:
                    raise TypeError(f"LCAM: the gradient of {where} is {g.dtype} on {g.device}, "
                                    f"the parameter {p.dtype} on {p.device}")
                if g.shape != p.shape:
                    raise ValueError(f"LCAM: the gradient of {where} has shape "
                                     f"{tuple(g.shape)}, the parameter {tuple(p.shape)}")
                for what, t in (("", p), ("the gradient of ", g)):
                    if not t.is_contiguous():
                        raise ValueError(
                            f"LCAM: {what}{where} is not contiguous (shape {tuple(t.shape)}, "
                            f"stride {t.stride()}): LCAM steps the memory in place and needs "
                            "contiguous tensors (e.g. no channels_last parameters)")
                    if t.is_neg() or t.is_conj():
                        raise ValueError(f"LCAM: {what}{where} is a lazily negated or "
                                         "conjugated view: resolve it first")
                buf = self.state[p].get("momentum_buffer") if p in self.state else None
                if buf is not None and (
                        not isinstance(buf, torch.Tensor) or buf.layout != torch.strided
                        or buf.dtype != p.dtype or buf.device != p.device
                        or buf.shape != p.shape or not buf.is_contiguous()):
                    desc = (f"{buf.dtype} {tuple(buf.shape)} on {buf.device}"
                            if isinstance(buf, torch.Tensor) else type(buf).__name__)
                    raise ValueError(f"LCAM: the momentum buffer of {where} is {desc}: "
                                     f"expected a contiguous {p.dtype} {tuple(p.shape)} tensor "
                                     f"on {p.device}")
                items.append((gi, pi, p, g, buf))
        return device, items

    # ---------------------------------------------------------------------------- the loss
    def _reduce_group(self):
        """``(True, group)`` when the loss must be all-reduced, else ``(False, None)``."""
        import torch.distributed as dist
        if not dist.is_available():
            return False, None
        if self._process_group is not None:
            return dist.get_world_size(self._process_group) > 1, self._process_group
        if dist.is_initialized():
            return dist.get_world_size() > 1, None
        return False, None

    def _loss(self, loss):
        """The batch loss as a float or a 0-dim tensor, averaged over the process group."""
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise ValueError("LCAM.step(loss): the loss must have exactly one element (a "
                                 f"mean-reduced batch loss), got shape {tuple(loss.shape)}")
            if loss.is_complex() or loss.dtype == torch.bool:
                raise TypeError(f"LCAM.step(loss): a loss of dtype {loss.dtype}")
            t = loss.detach().reshape(())
        elif isinstance(loss, numbers.Real) and not isinstance(loss, bool):
            t = float(loss)
        else:
            raise TypeError("LCAM.step(loss): the loss must be a one-element tensor or a real "
                            f"number, got {type(loss).__name__}")
        reduce, group = self._reduce_group()
        if not reduce:
            return t
        import torch.distributed as dist
        backend = str(dist.get_backend(group))
        if isinstance(t, float):
            t = torch.tensor(t, dtype=torch.float64)
        else:
            t = t.to(torch.float64).clone()
        if "nccl" in backend and t.device.type != "cuda":
            t = t.to(torch.device("cuda", torch.cuda.current_device()))
        elif "nccl" not in backend and t.device.type == "cuda" and "cuda:" not in backend:
            t = t.cpu()
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        return t / dist.get_world_size(group)

    # ------------------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, loss=None):
        """One step with the gradients in ``p.grad`` and the momentum in force, then the phase
        decision from ``loss`` (the batch's mean-reduced loss: a one-element tensor or a float;
        REQUIRED — or a closure returning it). Parameters without a gradient are skipped (value
        and buffer untouched). Returns the loss.

        Raises, changing nothing: ``TypeError`` without a loss; ``NonFiniteLossError`` (a
        ``ValueError``) for a NaN or infinite loss (on CUDA with a tensor loss the device skips
        the step instead, counted in ``epoch_stats()["rejected_losses"]``); ``TypeError`` /
        ``ValueError`` for unsupported tensors or hyper-parameters."""
        if loss is None:
            raise TypeError("LCAM.step(loss): the batch loss is required (call "
                            "opt.step(loss) after loss.backward()); it decides the momentum "
                            "of the next step")
        if callable(loss) and not isinstance(loss, torch.Tensor):
            with torch.enable_grad():
                loss = loss()
        returned = loss
        device, items = self._collect()
        for gi, group in enumerate(self.param_groups):
            self._check_group(group, gi)
        value = self._loss(loss)
        if device is not None and device.type == "cuda":
            self._step_cuda(device, value)
        else:
            self._step_cpu(items, value)
        return returned

    def _step_cpu(self, items, loss):
        if isinstance(loss, torch.Tensor):
            loss = loss.item()
        self._controller.check_loss(loss)  # NonFiniteLossError before anything changes
        mu = self._controller.momentum()
        hyper = [(float(g["lr"]), float(g["weight_decay"]), float(g["dampening"]),
                  bool(g["nesterov"])) for g in self.param_groups]
        entries, fresh, touched = [], [], []
        for gi, pi, p, g, buf in items:
            has = buf is not None
            if mu != 0 and buf is None:
                buf = torch.empty_like(p, memory_format=torch.contiguous_format)
                fresh.append((p, buf))
            entries.append((gi, pi, p.data_ptr(), g.data_ptr(),
                            buf.data_ptr() if mu != 0 else 0, p.numel(),
                            p.dtype == torch.float64, has))
            touched.append(p)
            if mu != 0:
                touched.append(buf)
        # `items`, `fresh` and `touched` hold every tensor whose memory is passed until the call
        # returns (lcam-py/src/cpu.rs: the safety argument); the GIL is held throughout.
        _lcam.cpu_step(entries, hyper, mu)
        for p, buf in fresh:
            self.state[p]["momentum_buffer"] = buf
        _increment_version(touched)
        self._controller.observe(loss)

    # ------------------------------------------------------------------------------ CUDA
    def _step_cuda(self, device, loss):
        if not _lcam.HAS_CUDA:
            raise RuntimeError(f"LCAM: the parameters are on {device} but this build of lcam "
                               "has no CUDA support (build the wheel with `--features cuda`)")
        if isinstance(loss, float):
            if not math.isfinite(loss):
                raise NonFiniteLossError(f"non-finite loss {loss}: nothing was changed")
            loss = torch.tensor(loss, dtype=torch.float64, device=device)
        else:
            if loss.dtype not in _DTYPES:
                loss = loss.to(torch.float64)
            loss = loss.to(device).reshape(()).contiguous()
        stream = torch.cuda.current_stream(device)
        key = (device, stream.cuda_stream, tuple(
            (tuple(map(id, g["params"])), float(g["weight_decay"]), float(g["dampening"]),
             bool(g["nesterov"])) for g in self.param_groups))
        if self._cuda is None or self._cuda["key"] != key:
            self._cuda_sync_back()
            self._cuda = self._cuda_build(device, stream.cuda_stream, key)
        touched = []
        for cg, group in zip(self._cuda["groups"], self.param_groups):
            params = group["params"]
            grads = [p.grad for p in params]
            cg.step(float(group["lr"]), [p.data_ptr() for p in params],
                    [0 if g is None else g.data_ptr() for g in grads],
                    [p.numel() for p in params], loss.data_ptr(),
                    loss.dtype == torch.float64)
            touched.extend(p for p, g in zip(params, grads) if g is not None)
        _increment_version(touched)

    def _cuda_build(self, device, stream, key):
        ctl = self._controller.state()
        ctl_args = (ctl["epoch"], ctl["count"], ctl["sum"], ctl["steps_below"], ctl["phase"])
        groups = []
        for group in self.param_groups:
            params = list(group["params"])
            dtype = params[0].dtype if params else torch.float32
            host, bufs = [], []
            for p in params:
                b = self.state[p].get("momentum_buffer") if p in self.state else None
                if b is None:
                    bufs.append(None)
                    continue
                b = b.detach().to(device="cpu", dtype=dtype).contiguous()
                host.append(b)
                bufs.append((b.data_ptr(), b.numel()))
            groups.append(_lcam.CudaGroup(
                device.index if device.index is not None else torch.cuda.current_device(),
                stream, dtype == torch.float64, [list(p.shape) for p in params],
                (float(group["lr"]), float(group["weight_decay"]), self.momentum_below,
                 self.momentum_above, self.initial_momentum, float(group["dampening"]),
                 bool(group["nesterov"])), ctl_args, bufs))
            del host
        return {"key": key, "groups": groups,
                "params": [list(g["params"]) for g in self.param_groups]}

    def _cuda_sync_back(self):
        """Copies the device state (buffers, controller) into ``self.state`` and the host
        controller. Returns ``self._cuda`` (kept usable)."""
        if self._cuda is None:
            return None
        ctl = None
        for cg, params in zip(self._cuda["groups"], self._cuda["params"]):
            ctl, bufs = cg.state()
            for p, raw in zip(params, bufs):
                if raw is None:
                    continue
                if len(raw) == 0:  # torch.frombuffer refuses an empty buffer
                    b = torch.empty(p.shape, dtype=p.dtype)
                else:
                    b = torch.frombuffer(bytearray(raw), dtype=p.dtype).reshape(p.shape)
                self.state[p]["momentum_buffer"] = b.to(p.device)
        if ctl is not None:
            self._controller.set_state(ctl["epoch"], ctl["count"], ctl["sum"],
                                       ctl["steps_below"], ctl["phase"])
        return self._cuda

    # ------------------------------------------------------------------------ state dict
    def _lcam_state(self):
        return {"format": STATE_FORMAT, "momentum_below": self.momentum_below,
                "momentum_above": self.momentum_above,
                "initial_momentum": self.initial_momentum,
                "controller": self._controller.state()}

    def _controller_from(self, extra):
        """A controller from a saved ``"lcam"`` entry, validated (ValueError)."""
        if not isinstance(extra, dict) or extra.get("format") != STATE_FORMAT:
            raise ValueError(f"LCAM.load_state_dict: the \"lcam\" entry is not a "
                             f"{STATE_FORMAT} state")
        try:
            c = _lcam.Controller(float(extra["momentum_below"]), float(extra["momentum_above"]),
                                 float(extra["initial_momentum"]))
            s = extra["controller"]
            c.set_state(int(s["epoch"]), int(s["count"]), float(s["sum"]),
                        int(s["steps_below"]), s["phase"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"LCAM.load_state_dict: malformed \"lcam\" entry ({e!r})") from None
        return c

    def state_dict(self):
        """Torch's layout (``state``: a ``momentum_buffer`` per parameter that has one;
        ``param_groups``) plus ``"lcam"``: the momenta and the controller (epoch, count, the f64
        running sum, steps below, last phase). Synchronises with the GPU on CUDA."""
        self._cuda_sync_back()
        sd = super().state_dict()
        sd["lcam"] = self._lcam_state()
        return sd

    def load_state_dict(self, state_dict):
        """Loads a ``state_dict()`` (buffers cast to each parameter's dtype and device, as
        torch does); continuing is bit-identical to never stopping. Validated first: nothing
        changes on a ValueError."""
        state_dict = dict(state_dict)
        extra = state_dict.pop("lcam", None)
        if extra is None:
            raise ValueError("LCAM.load_state_dict: no \"lcam\" entry (not an LCAM state dict)")
        controller = self._controller_from(extra)
        saved = state_dict.get("param_groups", [])
        for gi, g in enumerate(saved):
            merged = {**self.defaults, **g}
            try:
                _lcam.validate_config(
                    float(merged["lr"]), float(merged["weight_decay"]),
                    controller.momentum_below, controller.momentum_above,
                    controller.initial_momentum, float(merged["dampening"]),
                    bool(merged["nesterov"]))
            except ValueError as e:
                raise ValueError(f"LCAM.load_state_dict: param group {gi}: {e}") from None
        super().load_state_dict(state_dict)
        for p, s in self.state.items():
            b = s.get("momentum_buffer") if isinstance(s, dict) else None
            if isinstance(b, torch.Tensor) and not b.is_contiguous():
                s["momentum_buffer"] = b.contiguous()
        self._controller = controller
        self._cuda = None  # rebuilt from `self.state` on the next CUDA step

    def __getstate__(self):
        self._cuda_sync_back()
        d = super().__getstate__()
        d["lcam"] = self._lcam_state()
        return d

    def __setstate__(self, state):
        # Unpickling (with "lcam"), or torch's `load_state_dict` (state and groups only).
        state = dict(state)
        extra = state.pop("lcam", None)
        super().__setstate__(state)
        if extra is not None:
            self._controller = self._controller_from(extra)
            self._process_group = None
            self._cuda = None

    def __repr__(self):
        head = (f"LCAM(momentum_below={self.momentum_below}, "
                f"momentum_above={self.momentum_above}, "
                f"initial_momentum={self.initial_momentum})")
        return head + "\n" + super().__repr__()
