"""``cpi-theory sweep SPEC --out results.nc``: a parameter sweep from a JSON/TOML spec, resumable."""

import sys

from .._errors import ConfigError
from ._exit import exit_at_once_on_interrupt
from ._manual import SWEEP_EPILOG


def _positive_int(flag: str, value):
    if value is None:
        return None
    if value < 1:
        raise ConfigError(flag, f"must be >= 1, got {value}")
    return value


def _start_distributed(args) -> None:
    """Join a multi-host run: one process per host, all running the same command (see docs/sweeps.md)."""
    import jax

    # CPU hosts need a cross-process collective backend; GPU/TPU hosts ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if args.coordinator:
        kwargs = {
            "coordinator_address": args.coordinator,
            "num_processes": args.num_processes,
            "process_id": args.process_id,
        }
        if args.num_processes is None or args.process_id is None:
            raise ConfigError("--coordinator", "needs --num-processes and --process-id too")
    jax.distributed.initialize(**kwargs)  # without arguments: auto-detected (SLURM, Open MPI, TPU pods...)


@exit_at_once_on_interrupt("sweep")
def _run(args) -> int:
    from ..simulation import get_engine
    from ..sweep._runner import run_sweep
    from ..sweep._spec import SweepSpec

    chunk_size = _positive_int("--chunk-size", args.chunk_size)
    _positive_int("--cpu-devices", args.cpu_devices)
    get_engine(args.engine)
    spec = SweepSpec.from_file(args.spec)
    if args.trajectory_every is not None:
        if args.trajectory_every < 0:
            raise ConfigError("--trajectory-every", f"must be >= 0, got {args.trajectory_every}")
        data = spec.to_mapping()
        data["trajectory_every"] = args.trajectory_every
        spec = SweepSpec.from_mapping(data)
    from ..simulation import use_cpu_cores

    use_cpu_cores(args.cpu_devices)  # one device per core: each advances cache-sized groups of runs
    if args.distributed:
        _start_distributed(args)
    result = run_sweep(
        spec,
        args.out,
        engine=args.engine,
        chunk_size=chunk_size,
        resume=args.resume,
        progress=not args.no_progress,
        keep_chunks=args.keep_chunks,
        cpu_kernel=not args.no_cpu_kernel,
    )
    wrote = f"; wrote {args.out}" if result.dataset is not None else ""
    print(f"cpi-theory sweep: {result.summary_line()}{wrote}", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a parameter sweep (grid and/or random) and write an xarray Dataset (netCDF)",
        description=(
            "Run every configuration of a sweep spec (JSON or TOML: {'base': {...}, 'grid': {key: [values]}, "
            "'random': {key: {'uniform': [lo, hi]}}, 'n_runs': N, 'seed': 0}) in vmapped chunks sharded over "
            "the devices; finished chunks are kept (in the Zarr store, or OUT.nc.chunks/) so --resume continues "
            "after a crash."
        ),
        epilog=SWEEP_EPILOG,
    )
    parser.add_argument("spec", metavar="SPEC", help="sweep spec file (.json or .toml; format below)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="OUT",
        help="results: a Zarr store (OUT.zarr: each chunk streamed into it as it finishes, readable with "
        "xarray.open_zarr while the sweep runs, memory bounded by a chunk) or a netCDF file (OUT.nc: for "
        "results that fit in memory; finished chunks kept in OUT.nc.chunks/); format below",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep into --out (default: start afresh)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        metavar="N",
        help="runs per chunk, an integer >= 1 (default: the engine's for the device: reduced 262144 on a CPU, "
        "4194304 on a GPU; full 256 on a CPU, 100000 on a GPU)",
    )
    parser.add_argument(
        "--engine",
        default="reduced",
        help="reduced (default: the exact class dynamics, minimal state per regime) or full (the d x d model; "
        "integer class counts only)",
    )
    parser.add_argument(
        "--trajectory-every",
        type=int,
        metavar="K",
        help="keep trajectories every K steps, an integer >= 0 (0: summaries only, memory O(1) per run); "
        "overrides the spec's trajectory_every (default: the spec's)",
    )
    parser.add_argument(
        "--cpu-devices",
        type=int,
        metavar="N",
        help="JAX devices to split a CPU host into, an integer >= 1 (default: one per core)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first: shard the sweep over the devices of every host "
        "(default: this host only)",
    )
    parser.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="with --distributed: process 0's address (default: auto-detected)",
    )
    parser.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="with --coordinator: number of hosts (required with it)",
    )
    parser.add_argument(
        "--process-id", type=int, metavar="I", help="with --coordinator: this host's index (required with it)"
    )
    parser.add_argument(
        "--keep-chunks", action="store_true", help="keep OUT.chunks/ after the final write (default: removed)"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown on stderr)"
    )
    parser.add_argument(
        "--no-cpu-kernel",
        action="store_true",
        help="run XLA's program on a CPU too, not the reduced engine's CPU kernel (default: the kernel, "
        "where the engine has one; e.g. to --resume a sweep that XLA's program started)",
    )
    parser.set_defaults(func=_run)
