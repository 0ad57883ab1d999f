"""The summaries engine's whole loop as one CPU kernel whose state stays in vector registers.

Why (issue 21, ``docs/minimal_engine.md``): XLA's CPU backend cuts one step of the summaries engine into 18-23
fusions (an exponential or a divide with several users is never duplicated into its users, so each ends a
fusion), and each fusion is a pass over the group's arrays through memory; with the older fusion emitter
(fewer passes) XLA's float64 exponential is not even vectorized. Here the step is emitted once as LLVM IR
over vectors of :data:`LANES` runs, and a block of runs takes all its steps with the state in registers.

How: the generated update (``_generated.velocity_<regime>``) and probe gap (``probe_gap_<regime>``), the same
functions the XLA engine runs, are executed once on symbolic values (:class:`_Graph`), which records their
arithmetic as a graph. Nodes that depend on the parameters only (Lemma 3's table entries, the constant
exponentials of the value logits, the learning-rate factors) are evaluated on the host with NumPy, once per
run, and enter the kernel as inputs; the nodes that depend on the state become the loop body. The
exponential is a polynomial (:func:`_exp_ir`: Cody-Waite reduction and a Chebyshev fit, within one ulp of
NumPy's), because LLVM would otherwise call the scalar libm once per lane.

The kernel computes what ``summary_engine(regime, record_every)`` computes per step (M_C on recorded steps,
the running start / peak / peak step / first non-finite M_C, the first step whose state is not finite, the
update, and M_C at stored steps); the final record's M_C comes from one more call at t = steps (rounded as
every other M_C), its loss from the host. No fast-math flags: every operation rounds as in XLA's and NumPy's
code, whatever the host's vector instructions. Every regime agrees with the XLA engine within 1e-13
(``tests/test_cpu_kernel.py``). Only concrete batches use it (sweeps and :func:`cpi_theory.simulate_many` on a
CPU: the summaries and stored M_C): derivatives, single runs, other stored metrics and other platforms keep
the XLA engine, the reference.

It needs ``llvmlite`` >= 0.45 (a dependency); where it cannot be imported or build the kernel,
:func:`summary_kernel` returns None (with a warning in the second case) and the XLA program runs instead.
"""

import concurrent.futures
import ctypes
import functools
import inspect
import math
import struct
import types
import warnings

import numpy as np

from .._interrupt import raise_if_interrupted
from ..engine._loop import recorded_steps
from . import _generated
from ._codegen import Regime
from ._inputs import PARAM_NAMES, symbol_columns
from ._minimal import pretrained_coordinates

# Runs per vector value, by value_trained. Wider than a register (8 float64 with AVX-512): LLVM splits each
# operation into lanes / 8 independent ones, which the core overlaps; one step's chain of exponentials and
# divides is otherwise latency bound. Frozen regime, 2-core machine, 20,000 runs x 3,000 steps, one core:
# 8 lanes 4.3e7, 16 6.5e7, 32 7.9e7, 64 9.0e7, 128 7.0e7 config-steps/s while products were still contracted
# into fused multiply-adds; without (as now) 32 lanes 7.5e7 and 64 7.0e7 (two cores: 1.45e8, 1.37e8). The
# value regimes' state (78-166 coordinates) already gives the core independent work: 8 lanes 2.1e7, 16
# 2.6e7, 32 2.1e7 (value regime, 20,000 runs x 1,000 steps, two cores).
LANES = {False: 32, True: 16}
# Config-steps of one kernel call per thread (about 0.3 s on the 2-core machine): Ctrl-C waits at most that.
SEGMENT_CONFIG_STEPS = 1 << 25
# The running values after the state: M_C at step 0, the peak, its step, the first recorded step whose M_C
# is not finite, the first step whose state is not finite (steps as float64; -1: none), and M_C at the last
# step taken (the final M_C comes from one more call at t = steps, so that it rounds as every other M_C).
RUNNING = ("start", "peak", "peak_step", "first_nonfinite_reliance", "first_nonfinite_step", "reliance")


# -- the symbolic trace -------------------------------------------------------------------------------------
class _Graph:
    """Hash-consed nodes ``(op, *args)``; args are node ids, or a float for ``const``, a name for ``param``,
    an index for ``state``. Equal subexpressions are one node."""

    def __init__(self):
        self.nodes: list[tuple] = []
        self.index: dict[tuple, int] = {}

    def add(self, *node) -> "_Sym":
        if node[0] == "const":
            node = ("const", float(node[1]))
        if node not in self.index:
            self.index[node] = len(self.nodes)
            self.nodes.append(node)
        return _Sym(self, self.index[node])

    def lift(self, value) -> "_Sym":
        if isinstance(value, _Sym):
            return value
        if isinstance(value, bool | int | float | np.floating | np.integer):
            return self.add("const", value)
        raise TypeError(f"cannot trace a {type(value).__name__}")


class _Sym:
    """A node of a :class:`_Graph`, with the arithmetic the generated code uses."""

    __slots__ = ("graph", "id")

    def __init__(self, graph: _Graph, node_id: int):
        self.graph, self.id = graph, node_id

    def _op(self, op, *others):
        return self.graph.add(op, self.id, *(self.graph.lift(o).id for o in others))

    def _rop(self, op, other):
        return self.graph.add(op, self.graph.lift(other).id, self.id)

    __add__ = lambda self, o: self._op("add", o)  # noqa: E731
    __radd__ = lambda self, o: self._rop("add", o)  # noqa: E731
    __sub__ = lambda self, o: self._op("sub", o)  # noqa: E731
    __rsub__ = lambda self, o: self._rop("sub", o)  # noqa: E731
    __mul__ = lambda self, o: self._op("mul", o)  # noqa: E731
    __rmul__ = lambda self, o: self._rop("mul", o)  # noqa: E731
    __truediv__ = lambda self, o: self._op("div", o)  # noqa: E731
    __rtruediv__ = lambda self, o: self._rop("div", o)  # noqa: E731
    __neg__ = lambda self: self.graph.add("neg", self.id)  # noqa: E731
    __ne__ = lambda self, o: self._op("ne", o)  # noqa: E731
    __eq__ = lambda self, o: self._op("eq", o)  # noqa: E731
    __gt__ = lambda self, o: self._op("gt", o)  # noqa: E731
    __lt__ = lambda self, o: self._rop("gt", o)  # noqa: E731
    __hash__ = None


def _namespace(graph: _Graph) -> types.SimpleNamespace:
    """The ``jnp`` of the generated code, on symbols."""

    def call(op, *args):
        return graph.add(op, *(graph.lift(a).id for a in args))

    return types.SimpleNamespace(
        exp=lambda x: call("exp", x),
        log=lambda x: call("log", x),
        maximum=lambda a, b: call("max", a, b),
        where=lambda c, a, b: call("where", c, a, b),
    )


def _traced(fn, graph: _Graph):
    """``fn`` (a generated function) with its ``jnp`` bound to the symbolic namespace (the function itself,
    not a wrapper: the test suite's type-checking hook wraps every function of the package)."""
    fn = inspect.unwrap(fn)
    namespace = {**fn.__globals__, "jnp": _namespace(graph)}
    return types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)


@functools.cache
def _trace(regime: Regime):
    """The graph of one regime: its roots (the velocity, the loss, the probe gap) and the state's size."""
    names = getattr(_generated, f"STATE_{regime.name}")
    graph = _Graph()
    x = tuple(graph.add("state", i) for i in range(len(names)))
    p = {name: graph.add("param", name) for name in PARAM_NAMES}
    velocity, loss = _traced(getattr(_generated, f"velocity_{regime.name}"), graph)(x, p)
    gap = _traced(getattr(_generated, f"probe_gap_{regime.name}"), graph)(x, p)
    return graph, tuple(graph.lift(v).id for v in velocity), graph.lift(loss).id, graph.lift(gap).id


def _depends_on_state(graph: _Graph) -> list[bool]:
    out = []
    for node in graph.nodes:
        op = node[0]
        out.append(op == "state" or (op not in ("const", "param") and any(out[a] for a in node[1:])))
    return out


def _reachable(graph: _Graph, roots) -> list[int]:
    """Node ids that the roots read, in topological (creation) order."""
    seen, stack = set(), list(roots)
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        if node[0] not in ("const", "param", "state"):
            stack.extend(node[1:])
    return sorted(seen)


# -- the host side: NumPy evaluation of nodes ----------------------------------------------------------------
_NUMPY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "neg": np.negative,
    "ne": np.not_equal,
    "eq": np.equal,
    "gt": np.greater,
    "exp": np.exp,
    "log": np.log,
    "max": np.maximum,  # propagates NaN, as jnp.maximum
    "where": lambda c, a, b: np.where(c, a, b),
}


def _evaluate(graph: _Graph, wanted, params: dict, state=None) -> dict[int, np.ndarray]:
    """The values of the nodes ``wanted`` (NumPy, elementwise over runs)."""
    values: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):  # inf / NaN propagate as in XLA; divergence is reported, not warned
        for node_id in _reachable(graph, wanted):
            op, *args = graph.nodes[node_id]
            if op == "const":
                values[node_id] = np.float64(args[0])
            elif op == "param":
                values[node_id] = params[args[0]]
            elif op == "state":
                values[node_id] = state[args[0]]
            else:
                values[node_id] = _NUMPY[op](*(values[a] for a in args))
    return values


def _as_float64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def host_symbols(params) -> dict[str, np.ndarray]:
    """:func:`cpi_theory.reduced.symbol_values` as float64 NumPy columns (no JAX)."""
    return symbol_columns(params, _as_float64)


def host_initial_state(params, regime: Regime, n_runs: int) -> list[np.ndarray]:
    """:func:`cpi_theory.reduced.minimal_initial_state` in NumPy (q = relation score e_r + the tilt)."""
    values = pretrained_coordinates(_as_float64(params.relation_score), _as_float64(params.context_bias))
    names = getattr(_generated, f"STATE_{regime.name}")
    return [np.broadcast_to(values.get(n, np.float64(0.0)), (n_runs,)).astype(np.float64) for n in names]


# -- the device side: LLVM IR over <LANES x double> ----------------------------------------------------------
def _double(value: float) -> str:
    """A float64 in LLVM IR's exact hexadecimal spelling."""
    return f"0x{struct.unpack('<Q', struct.pack('<d', value))[0]:016X}"


class _Vec:
    """The IR spelling of vectors of ``lanes`` float64 (``V``), of their masks (``B``) and of constants."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        self.V = f"<{lanes} x double>"
        self.B = f"<{lanes} x i1>"
        self.I = f"<{lanes} x i64>"

    def splat(self, value: float) -> str:
        return "<" + ", ".join(f"double {_double(value)}" for _ in range(self.lanes)) + ">"

    def isplat(self, value: int) -> str:
        return "<" + ", ".join(f"i64 {value}" for _ in range(self.lanes)) + ">"

    def true(self) -> str:
        return "<" + ", ".join("i1 true" for _ in range(self.lanes)) + ">"


# exp(r) on -ln(2) / 2 <= r <= ln(2): the degree-12 polynomial through exp at the 13 Chebyshev nodes of that
# interval (near-minimax: 1.3e-17 relative, so float64 rounding, ~1e-16, dominates), coefficients of r^0 ...
# r^12 computed at 50 digits with mpmath and rounded (tests/test_cpu_kernel.py recomputes them). The interval
# reaches ln(2) because k stops at 1023: exp(x) for x in (709.09, 709.78] has r up to ln(2).
EXP_INTERVAL = (-0.5, 1.0)  # in units of ln(2)
EXP_COEFFICIENTS = (
    1.0,
    1.0,
    0.5000000000000031,
    0.16666666666665622,
    0.04166666666649655,
    0.008333333333847425,
    0.001388888891951812,
    0.00019841268768944277,
    2.4801569444208748e-05,
    2.7558271183369504e-06,
    2.7554468333768343e-07,
    2.477276079726472e-08,
    2.4946871718919045e-09,
)
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2 with its last 21 bits zero: k * LN2_HI is exact for |k| < 2^21
LN2_LO = 1.90821492927058770002e-10
MAGIC = 6755399441055744.0  # 1.5 * 2^52: y + MAGIC rounds y to an integer held in the low mantissa bits
EXP_OVERFLOW = 709.782712893384  # above: exp(x) = inf in float64
EXP_UNDERFLOW = -708.3964185322641  # below: exp(x) < 2^-1022, subnormal; flushed to 0, as XLA does


def _exp_ir(v: _Vec) -> str:
    """``@vexp``: exp(x) = 2^k p(r), k = round(x / ln 2) in [-1022, 1023] (from the bits of x / ln 2 + MAGIC),
    r = x - k ln 2 (two-part; the product is exact), p :data:`EXP_COEFFICIENTS`, 2^k from the bits of k. NaN
    stays NaN; above :data:`EXP_OVERFLOW` inf; below :data:`EXP_UNDERFLOW`, where the result is subnormal, 0
    (as XLA's CPU exponential)."""
    magic_bits = struct.unpack("<q", struct.pack("<d", MAGIC))[0]
    lines = [
        f"define internal {v.V} @vexp({v.V} %x) alwaysinline {{",
        f"  %y = fmul {v.V} %x, {v.splat(LOG2E)}",
        f"  %hi = fcmp ogt {v.V} %y, {v.splat(1023.0)}",
        f"  %y1 = select {v.B} %hi, {v.V} {v.splat(1023.0)}, {v.V} %y",
        f"  %lo = fcmp olt {v.V} %y1, {v.splat(-1022.0)}",
        f"  %y2 = select {v.B} %lo, {v.V} {v.splat(-1022.0)}, {v.V} %y1",
        f"  %m = fadd {v.V} %y2, {v.splat(MAGIC)}",
        f"  %k = fsub {v.V} %m, {v.splat(MAGIC)}",
        f"  %khi = fmul {v.V} %k, {v.splat(LN2_HI)}",
        f"  %r0 = fsub {v.V} %x, %khi",
        f"  %klo = fmul {v.V} %k, {v.splat(LN2_LO)}",
        f"  %r = fsub {v.V} %r0, %klo",
        f"  %p0 = fadd {v.V} {v.splat(0.0)}, {v.splat(EXP_COEFFICIENTS[-1])}",
    ]
    horner = EXP_COEFFICIENTS[-2::-1]  # Horner: the highest power first
    for i, c in enumerate(horner, start=1):
        fma = f"@llvm.fma.v{v.lanes}f64"
        lines.append(f"  %p{i} = call {v.V} {fma}({v.V} %p{i - 1}, {v.V} %r, {v.V} {v.splat(c)})")
    lines += [
        f"  %mb = bitcast {v.V} %m to {v.I}",
        f"  %kb = sub {v.I} %mb, {v.isplat(magic_bits - 1023)}",
        f"  %sb = shl {v.I} %kb, {v.isplat(52)}",
        f"  %s = bitcast {v.I} %sb to {v.V}",
        f"  %e = fmul {v.V} %p{len(horner)}, %s",
        f"  %over = fcmp ogt {v.V} %x, {v.splat(EXP_OVERFLOW)}",
        f"  %e1 = select {v.B} %over, {v.V} {v.splat(math.inf)}, {v.V} %e",
        f"  %under = fcmp olt {v.V} %x, {v.splat(EXP_UNDERFLOW)}",
        f"  %e2 = select {v.B} %under, {v.V} {v.splat(0.0)}, {v.V} %e1",
        f"  ret {v.V} %e2",
        "}",
        f"declare {v.V} @llvm.fma.v{v.lanes}f64({v.V}, {v.V}, {v.V})",
    ]
    return "\n".join(lines)


_BINARY = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}
_COMPARE = {"ne": "une", "eq": "oeq", "gt": "ogt"}  # as NumPy / XLA: NaN != x is true, the others false


class _Body:
    """The SSA text of state-dependent nodes; inputs (parameter-only nodes) and state are named values."""

    def __init__(self, graph: _Graph, names: dict[int, str], prefix: str, v: _Vec):
        self.graph, self.names, self.prefix, self.lines, self.v = graph, dict(names), prefix, [], v
        self.kinds: dict[int, str] = {}  # "b": a vector of i1 (a comparison); else double

    def value(self, node_id: int) -> str:
        if node_id in self.names:
            return self.names[node_id]
        op, *args = self.graph.nodes[node_id]
        if op == "const":
            return self.v.splat(args[0])
        raise KeyError(node_id)

    def emit(self, node_id: int) -> str:
        if node_id in self.names or self.graph.nodes[node_id][0] == "const":
            return self.value(node_id)
        op, *args = self.graph.nodes[node_id]
        v = self.v
        name = f"%{self.prefix}{node_id}"
        a = [self.value(i) for i in args]
        if op in _BINARY:
            # no fast-math flags (no contraction into fused multiply-adds): every operation rounds as XLA's
            # and NumPy's do, and the results do not depend on whether the host has FMA
            self.lines.append(f"  {name} = {_BINARY[op]} {v.V} {a[0]}, {a[1]}")
        elif op == "neg":
            self.lines.append(f"  {name} = fneg {v.V} {a[0]}")
        elif op == "exp":
            self.lines.append(f"  {name} = call {v.V} @vexp({v.V} {a[0]})")
        elif op == "max":  # NaN-propagating, as jnp.maximum: a + b (NaN) where either is NaN
            self.lines.append(f"  {name}.gt = fcmp ogt {v.V} {a[0]}, {a[1]}")
            self.lines.append(f"  {name}.m = select {v.B} {name}.gt, {v.V} {a[0]}, {v.V} {a[1]}")
            self.lines.append(f"  {name}.nan = fcmp uno {v.V} {a[0]}, {a[1]}")
            self.lines.append(f"  {name}.s = fadd {v.V} {a[0]}, {a[1]}")
            self.lines.append(f"  {name} = select {v.B} {name}.nan, {v.V} {name}.s, {v.V} {name}.m")
        elif op in _COMPARE:
            self.lines.append(f"  {name} = fcmp {_COMPARE[op]} {v.V} {a[0]}, {a[1]}")
            self.kinds[node_id] = "b"
        elif op == "where":
            cond = a[0]
            if self.kinds.get(args[0]) != "b":  # a 0/1 input from the host
                self.lines.append(f"  {name}.c = fcmp une {v.V} {cond}, {v.splat(0.0)}")
                cond = f"{name}.c"
            self.lines.append(f"  {name} = select {v.B} {cond}, {v.V} {a[1]}, {v.V} {a[2]}")
        else:
            raise NotImplementedError(f"cpu kernel: no vector form of {op!r} in the loop body")
        self.names[node_id] = name
        return name


def kernel_ir(regime: Regime, lanes: int) -> tuple[str, list[int], int]:
    """The LLVM IR of one regime's kernel, the parameter-only nodes it reads (host inputs, in order) and the
    number of state coordinates.

    ``void kernel(double* inputs, double* carry, double* stored, i64 n_blocks, i64 stride, i64 t_begin,
    i64 t_end, i64 record_every, i64 store_every)``: ``inputs`` row j, ``carry`` row k and ``stored`` row i
    are at ``j * stride`` (``stride`` runs, a multiple of the lanes); the carry rows are the state then
    :data:`RUNNING`. Each block of runs takes the steps ``t_begin, ..., t_end - 1`` in registers and leaves
    its carry for the next call; with ``store_every`` > 0, M_C at a step t that it divides goes to row
    ``t / store_every`` of ``stored``."""
    v = _Vec(lanes)
    graph, velocity, _, gap = _trace(regime)
    n_x = len(velocity)
    on_state = _depends_on_state(graph)
    live = _reachable(graph, (*velocity, gap))
    read = {a for i in live if on_state[i] and graph.nodes[i][0] != "state" for a in graph.nodes[i][1:]}
    # a velocity that does not depend on the state is read as an input too
    inputs = sorted(i for i in read | {*velocity, gap} if not on_state[i] and graph.nodes[i][0] != "const")
    carried = [f"x{k}" for k in range(n_x)] + list(RUNNING)
    out = [
        _exp_ir(v),
        "define void @kernel(ptr noalias %inp, ptr noalias %carry, ptr noalias %stored, i64 %nblk, i64 %stride, "
        "i64 %t.begin, i64 %t.end, i64 %every, i64 %store.every) nounwind {",
        "entry:",
        "  %storing = icmp ne i64 %store.every, 0",
        "  %store.div = select i1 %storing, i64 %store.every, i64 1",  # no division by 0 when not storing
        "  br label %blk",
        "blk:",
        "  %b = phi i64 [0, %entry], [%b.next, %done]",
        "  %more = icmp slt i64 %b, %nblk",
        "  br i1 %more, label %load, label %exit",
        "load:",
        f"  %off = mul i64 %b, {v.lanes}",
    ]

    def load_row(array: str, row: int, tag: str, value: str) -> None:
        """``value`` = this block's lanes of ``array``'s row ``row``; its address is ``%<tag>``."""
        out.append(f"  %{tag}.row = mul i64 %stride, {row}")
        out.append(f"  %{tag}.at = add i64 %{tag}.row, %off")
        out.append(f"  %{tag} = getelementptr double, ptr %{array}, i64 %{tag}.at")
        out.append(f"  {value} = load {v.V}, ptr %{tag}, align 8")

    names = {}
    for j, node_id in enumerate(inputs):
        load_row("inp", j, f"ip{j}", f"%in{j}")
        names[node_id] = f"%in{j}"
    for k, name in enumerate(carried):
        load_row("carry", k, f"cp{k}", f"%{name}.0")
    out += ["  br label %head", "head:", "  %t = phi i64 [%t.begin, %load], [%t.next, %latch]"]
    for name in carried:
        out.append(f"  %{name} = phi {v.V} [%{name}.0, %load], [%{name}.new, %latch]")
    out += ["  %go = icmp slt i64 %t, %t.end", "  br i1 %go, label %body, label %done", "body:"]
    for k in range(n_x):
        names[graph.lift(graph.add("state", k)).id] = f"%x{k}"
    body = _Body(graph, names, "n", v)
    for node_id in live:
        if on_state[node_id]:
            body.emit(node_id)
    out += body.lines
    g = body.value(gap)
    # M_C = sigmoid(gap) = 1 / (1 + exp(-gap)); the running summary as summary_engine's ``note``
    out += [
        f"  %ng = fneg {v.V} {g}",
        f"  %eg = call {v.V} @vexp({v.V} %ng)",
        f"  %den = fadd {v.V} %eg, {v.splat(1.0)}",
        f"  %mc = fdiv {v.V} {v.splat(1.0)}, %den",
        "  %tf = sitofp i64 %t to double",
        f"  %tv0 = insertelement {v.V} poison, double %tf, i32 0",
        f"  %tv = shufflevector {v.V} %tv0, {v.V} poison, <{v.lanes} x i32> zeroinitializer",
        "  %rem = urem i64 %t, %every",
        "  %rec = icmp eq i64 %rem, 0",
        "  %first = icmp eq i64 %t, 0",
        f"  %start.new = select i1 %first, {v.V} %mc, {v.V} %start",
        f"  %gt = fcmp ogt {v.V} %mc, %peak",
        f"  %better = select i1 %rec, {v.B} %gt, {v.B} zeroinitializer",
        f"  %peak.new = select {v.B} %better, {v.V} %mc, {v.V} %peak",
        f"  %peak_step.new = select {v.B} %better, {v.V} %tv, {v.V} %peak_step",
        f"  %amc = call {v.V} @llvm.fabs.v{v.lanes}f64({v.V} %mc)",
        f"  %mcfin = fcmp olt {v.V} %amc, {v.splat(math.inf)}",
        f"  %rnone = fcmp olt {v.V} %first_nonfinite_reliance, {v.splat(0.0)}",
        f"  %rbad0 = xor {v.B} %mcfin, {v.true()}",
        f"  %rbad1 = and {v.B} %rbad0, %rnone",
        f"  %rbad = select i1 %rec, {v.B} %rbad1, {v.B} zeroinitializer",
        f"  %first_nonfinite_reliance.new = select {v.B} %rbad, {v.V} %tv, {v.V} %first_nonfinite_reliance",
        f"  %reliance.new = fadd {v.V} %mc, {v.splat(-0.0)}",  # (x + -0.0 is x: a named copy)
    ]
    # the state's finiteness before the update (summary_engine's base_step): sum_k 0 * x_k is 0 when every
    # x_k is finite and NaN otherwise (0 * inf = NaN), one comparison instead of one per coordinate
    acc = v.splat(0.0)
    for k in range(n_x):
        out.append(
            f"  %z{k} = call {v.V} @llvm.fma.v{v.lanes}f64({v.V} %x{k}, {v.V} {v.splat(0.0)}, {v.V} {acc})"
        )
        acc = f"%z{k}"
    fin = "%finite"
    out.append(f"  %finite = fcmp ord {v.V} {acc}, {v.splat(0.0)}")
    out += [
        f"  %snone = fcmp olt {v.V} %first_nonfinite_step, {v.splat(0.0)}",
        f"  %sbad0 = xor {v.B} {fin}, {v.true()}",
        f"  %sbad = and {v.B} %sbad0, %snone",
        f"  %first_nonfinite_step.new = select {v.B} %sbad, {v.V} %tv, {v.V} %first_nonfinite_step",
    ]
    for k in range(n_x):
        out.append(f"  %x{k}.new = fadd {v.V} %x{k}, {body.value(velocity[k])}")
    # M_C of a stored step to its row (a branch on the step counter, the same for every run)
    out += [
        "  %srem = urem i64 %t, %store.div",
        "  %sat = icmp eq i64 %srem, 0",
        "  %save = and i1 %storing, %sat",
        "  br i1 %save, label %store, label %latch",
        "store:",
        "  %srow = udiv i64 %t, %store.div",
        "  %so = mul i64 %srow, %stride",
        "  %sa = add i64 %so, %off",
        "  %sp = getelementptr double, ptr %stored, i64 %sa",
        f"  store {v.V} %mc, ptr %sp, align 8",
        "  br label %latch",
        "latch:",
        "  %t.next = add i64 %t, 1",
        "  br label %head",
        "done:",
    ]
    for k, name in enumerate(carried):
        out.append(f"  store {v.V} %{name}, ptr %cp{k}, align 8")
    out += ["  %b.next = add i64 %b, 1", "  br label %blk", "exit:", "  ret void", "}"]
    out.append(f"declare {v.V} @llvm.fabs.v{v.lanes}f64({v.V})")
    return "\n".join(out), inputs, n_x


# -- compiling and running --------------------------------------------------------------------------------
@functools.cache
def _llvm():
    """llvmlite's binding with the native target initialized (once). ImportError where there is none fit."""
    import llvmlite
    import llvmlite.binding as llvm

    # >= 0.45 (LLVM 20): opaque pointers in the IR; 0.44's LLVM 15 rejects them
    if tuple(int(x) for x in llvmlite.__version__.split(".")[:2]) < (0, 45):
        raise ImportError(f"cpu kernel: llvmlite >= 0.45 is needed, found {llvmlite.__version__}")
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def _compile(ir: str, name: str):
    """(the execution engine, which must stay alive while the code runs; the address of ``name``). Each
    engine gets a target machine of its own: an engine owns its machine and frees it with itself."""
    llvm = _llvm()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
    )
    module = llvm.parse_assembly(ir)
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    module.verify()
    builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=3))
    builder.getModulePassManager().run(module, builder)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    return engine, engine.get_function_address(name)


class SummaryKernel:
    """One regime's compiled kernel and the graph it came from (see the module docstring)."""

    def __init__(self, regime: Regime, lanes: int | None = None):
        self.regime = regime
        self.lanes = LANES[regime.value_trained] if lanes is None else int(lanes)
        self.graph, _, self.loss, self.gap = _trace(regime)
        ir, self.inputs, self.n_x = kernel_ir(regime, self.lanes)
        self._engine, address = _compile(ir, "kernel")
        signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3, *[ctypes.c_int64] * 6)
        self._kernel = signature(address)  # ctypes releases the GIL during the call: threads run in parallel

    def run(
        self, params, *, steps: int, record_every: int = 1, store_every: int = 0, threads: int = 1
    ) -> dict[str, np.ndarray]:
        """The summary of M_C of columns of runs ``params`` (a :class:`cpi_theory.ToyParams` of NumPy columns,
        at least one run) as ``summary_engine`` computes it: :data:`SUMMARY_FIELDS` (steps as int32),
        ``first_nonfinite_step`` and the final ``state`` (a list of columns); with ``store_every`` > 0 also
        ``context_reliance``, (runs, stored steps): M_C at the steps 0, ``store_every``, ... and the last
        (written by the kernel as it steps: only M_C is kept, never the states).

        ``threads`` (1 or more) share the blocks of ``lanes`` runs; the steps go in segments of about
        :data:`SEGMENT_CONFIG_STEPS` per thread, between which Ctrl-C is honoured
        (:func:`cpi_theory._interrupt.raise_if_interrupted`). The results do not depend on ``threads``."""
        symbols = host_symbols(params)
        shape = np.broadcast_shapes(*(np.shape(v) for v in symbols.values()))
        n_runs = int(shape[0]) if shape else 1
        if n_runs < 1:
            raise ValueError("cpu kernel: no runs")
        symbols = {k: np.broadcast_to(v, (n_runs,)) for k, v in symbols.items()}
        blocks = -(-n_runs // self.lanes)
        stride = blocks * self.lanes

        def padded(column):  # the padding lanes repeat the last run (their results are dropped)
            out = np.empty(stride)
            out[:n_runs] = np.broadcast_to(column, (n_runs,))
            out[n_runs:] = out[n_runs - 1]
            return out

        values = _evaluate(self.graph, self.inputs, symbols)
        inputs = np.stack([padded(values[node_id]) for node_id in self.inputs])
        initial = host_initial_state(params, self.regime, n_runs)
        running = [np.full(stride, value) for value in (np.nan, -np.inf, -1.0, -1.0, -1.0, np.nan)]
        carry = np.stack([padded(column) for column in initial] + running)
        every = max(int(record_every), 1)
        steps = int(steps)
        stored = recorded_steps(steps, int(store_every)) if store_every else np.zeros(0, dtype=np.int64)
        # the kernel writes M_C at the stored steps before the last; the last (always ``steps``) is the final
        kept = np.empty((max(stored.size - 1, 1), stride))
        threads = max(1, min(int(threads), blocks))
        cuts = np.linspace(0, blocks, threads + 1).astype(np.int64)
        segment = max(1, SEGMENT_CONFIG_STEPS // (int(cuts[1] - cuts[0]) * self.lanes))

        def part(i, t_begin, t_end):
            first, count = int(cuts[i]), int(cuts[i + 1] - cuts[i])
            if count:
                offset = first * self.lanes * inputs.itemsize
                pointers = (array.ctypes.data + offset for array in (inputs, carry, kept))
                self._kernel(*pointers, count, stride, t_begin, t_end, every, int(store_every))

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:  # leaving it waits for running parts
            for t_begin in range(0, steps, segment):
                t_end = min(t_begin + segment, steps)
                pending = {pool.submit(part, i, t_begin, t_end) for i in range(threads)}
                while pending:
                    finished, pending = concurrent.futures.wait(pending, timeout=0.05)
                    for future in finished:
                        future.result()  # a part's exception, raised here
                    raise_if_interrupted()
        # The final record (summary_engine's ``records(final=True)``: the last step is always recorded): one
        # more step at t = steps on a copy, recording, storing nothing; its M_C and its note are the final
        # ones. The copy's update, and its state check (not a step taken), are dropped.
        state = carry[: self.n_x, :n_runs].copy()
        nonfinite = carry[self.n_x + RUNNING.index("first_nonfinite_step"), :n_runs].copy()
        self._kernel(
            inputs.ctypes.data, carry.ctypes.data, kept.ctypes.data, blocks, stride, steps, steps + 1, 1, 0
        )
        start, peak, peak_step, bad, _, final = carry[self.n_x :, :n_runs]
        if stored.size:
            reliance = np.concatenate([kept[: stored.size - 1, :n_runs].T, final[:, None]], axis=1)
        loss = _evaluate(self.graph, (self.loss,), symbols, list(state))[self.loss]
        return {
            "start": start,
            "peak": peak,
            "peak_step": peak_step.astype(np.int32),
            "final": final,
            "final_loss": np.broadcast_to(loss, (n_runs,)).astype(np.float64),
            "first_nonfinite_reliance": bad.astype(np.int32),
            "first_nonfinite_step": nonfinite.astype(np.int32),
            "state": list(state),
            **({"context_reliance": reliance} if stored.size else {}),
        }


@functools.cache
def _exp_program(lanes: int):
    v = _Vec(lanes)
    ir = "\n".join(
        [
            _exp_ir(v),
            "define void @apply(ptr noalias %x, ptr noalias %y, i64 %n) nounwind {",
            "entry:",
            "  br label %head",
            "head:",
            "  %i = phi i64 [0, %entry], [%i.next, %body]",
            "  %go = icmp slt i64 %i, %n",
            "  br i1 %go, label %body, label %exit",
            "body:",
            f"  %off = mul i64 %i, {lanes}",
            "  %px = getelementptr double, ptr %x, i64 %off",
            "  %py = getelementptr double, ptr %y, i64 %off",
            f"  %xv = load {v.V}, ptr %px, align 8",
            f"  %yv = call {v.V} @vexp({v.V} %xv)",
            f"  store {v.V} %yv, ptr %py, align 8",
            "  %i.next = add i64 %i, 1",
            "  br label %head",
            "exit:",
            "  ret void",
            "}",
        ]
    )
    engine, address = _compile(ir, "apply")
    return engine, ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(address)


def vector_exp(x) -> np.ndarray:
    """The kernel's exponential (:func:`_exp_ir`) applied to the float64 array ``x``: for tests."""
    x = np.asarray(x, dtype=np.float64)
    lanes = 8
    flat = np.zeros(-(-x.size // lanes) * lanes)
    flat[: x.size] = x.reshape(-1)
    out = np.empty_like(flat)
    _, apply = _exp_program(lanes)
    apply(flat.ctypes.data, out.ctypes.data, flat.size // lanes)
    return out[: x.size].reshape(x.shape)


@functools.cache
def summary_kernel(regime: Regime) -> SummaryKernel | None:
    """The compiled kernel of a regime, or None (the XLA program then runs): silently where ``llvmlite``
    (>= 0.45) cannot be imported, with a warning naming the cause where LLVM cannot build it here."""
    try:
        return SummaryKernel(regime)
    except ImportError:
        return None
    except Exception as error:  # noqa: BLE001 (a speed path: XLA's program is always there)
        warnings.warn(
            f"cpu kernel: not built for the {regime.name} regime ({type(error).__name__}: {error}); "
            "XLA's program runs instead",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
