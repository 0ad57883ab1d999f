"""float64 everywhere: every public function that computes theory refuses float32 (``Float64Required``) or
gives the float64 answer anyway. Each one is called in a fresh process where float64 is off (JAX's default),
and its answer compared with the one it gives with float64 on."""

import json
import subprocess
import sys
import textwrap

# Public names that are not called, and why. Everything else public must appear in CALLS below.
NOT_CALLED = {
    "enable_float64": "it turns float64 on: that is its job",
    "regime_of": "reduced: reads which classes and pathways a configuration has (booleans), no computation",
    "minimal_state_names": "reduced: names of a regime's coordinates, no computation",
    "minimal_velocity": "reduced: returns the generated update function (called by minimal_train, tested there)",
    **{
        name: "figures: experiment drivers (minutes each) that enable float64 themselves"
        for name in ("reproduce", "script_main", "write_figure_data", "write_index", "packaged_figures")
    },
    **{name: "figures: netCDF reading and writing, no computation" for name in ("load_dataset", "save_dataset")},
    **{
        name: "bridge: real transformers, float32 by design (cpi_theory/bridge/README.md)"
        for name in (
            "fact_world_config", "finetune", "get_size", "load_checkpoint",
            "make_fact_world", "make_measure_fn", "measure_model", "model_config", "pretrain",
            "pretraining_batch", "qk_filter", "run_bridge", "save_checkpoint",
            "write_report", "finetune_and_fit", "pretrained_model", "start_state", "write_json", "plot_study",
            "check_finite", "init_optimizer",
            # round two (issue 22): designs, the gate, per-group recipes, finetuning members
            "finetune_arms", "finetune_members", "gate", "gate_line", "gated_checkpoint", "gated_seeds",
            "get_design", "members_of", "param_group", "round2_world",
        )
    },
    "curve_numbers": "bridge: start / peak / final of a measured curve (NumPy float64), no theory computed",
    "score_prediction": "bridge: counts hits between two dicts of predictions, no theory computed",
    "predict_arms": "bridge: the toy through fit_time_scale and simulate_many (both called here: they refuse float32)",
    "use_cpu_cores": "simulation: sets how many CPU devices JAX starts with, no computation",
    "known_compiler_options": "simulation: which XLA compile options this jaxlib accepts, no theory computed",
    "load_trajectory": "fit: reads a measured curve from CSV / JSON (NumPy float64), no theory computed",
    "build_run_table": "sweep: a spec's runs as NumPy float64 columns, no theory computed (run_sweep is called)",
    "open_results": "sweep: opens a Zarr store with xarray, no computation",
    "summary_record": "fit: a dict of a curve's summarize() (NumPy float64)",
    "joint_report_fields": "fit: copies fields of a joint fit's report into a dict",
    "recovery_study": "fit: the recovery study runs joint_fit (called here) on many toy curves: minutes",
    "recovery_coverage": "fit: counts intervals of a recovery study's rows (NumPy), no theory computed",
}  # fmt: skip

# Each public function with arguments made while float64 was on (NumPy float64 arrays: what a user passes).
CALLS = textwrap.dedent(
    """
    import numpy as np
    import cpi_theory as ct
    from cpi_theory import bridge, engine, model, paper, phenomena, reduced, simulation
    import cpi_theory.fit as toyfit
    import importlib
    sweep = importlib.import_module("cpi_theory.sweep")  # the package (cpi_theory.sweep the attribute is the function)
    from cpi_theory.config import read_json_file
    import cpi_theory.advise as advisor

    host = lambda tree: jax.tree.map(np.asarray, tree)
    with jax.enable_x64(True):
        config = ct.Config(steps=5)
        world = host(ct.build_world(config))
        state = host(ct.pretrained_state(world, config.relation_score))
        params = host(ct.reduced_params(config))
        rstate = np.asarray(ct.reduced_initial_state(params))
        recorded = jax.device_get(ct.train(world, state, 1.0, 0.0, steps=5))
        records = {k: v for k, v in recorded.records.items()}
        vocab = ct.Vocabulary(40, 50)
        phi = np.asarray(model.embeddings(vocab))
        relation = np.full(world.context.shape, world.relation)
        x = np.stack([phi.T[world.context], phi.T[world.subject], phi.T[relation]], axis=1)
        logits = np.asarray(model.probe_logits(state, world)[0])[None, :]
        two = host(phenomena.stack_worlds([world, world]))
        params2 = jax.tree.map(lambda v: np.stack([v, v]), params)
        toy = toyfit.toy_parameters(0.6, 0.2, 0.5)
        steps, values = toyfit.simulate_toy(toy, steps=30)
        spec = ct.sweep_spec(base={"steps": 3}, grid={"lr_kq": [1.0, 2.0]})
        sweep_file = f"{tmp}/sweep.nc"
        ct.sweep(spec, sweep_file)
    json_file = f"{tmp}/config.json"
    open(json_file, "w").write('{"steps": 5}')
    fit_file = f"{tmp}/report.json"
    names = ("delta_m", "delta_c", "cs_fraction", "s_fraction", "context_bias", "lr_v_ratio", "time_scale")
    fit = dict(zip(names, (0.6, 0.2, 0.5, 0.0, 0.3, 0.0, 0.5)))
    open(fit_file, "w").write(json.dumps({"best_fit": {
        "parameters": {k: {"value": v} for k, v in fit.items()}, "step": [0.0, 100.0], "schedule": None,
    }}))

    CALLS = {
        # configuration, engine and simulation
        "resolve_config": lambda: ct.resolve_config({"steps": 5}),
        "read_json_file": lambda: read_json_file(json_file, "--config"),
        "require_float64": lambda: ct.require_float64(),
        "recorded_steps": lambda: ct.recorded_steps(5, 2),
        "summarize": lambda: ct.summarize(recorded_steps_, records["context_reliance"]),
        "classify_shape": lambda: engine.classify_shape(records["context_reliance"]),
        "classify_shapes": lambda: engine.classify_shapes(records["context_reliance"][None]),
        "first_bad_step": lambda: engine.first_bad_step(-1, recorded_steps_, records["loss"]),
        "raise_if_diverged": lambda: engine.raise_if_diverged(np.asarray(-1)),
        "trajectory_from_records": lambda: ct.trajectory_from_records(config, "full", records),
        "run_recorded": lambda: ct.run_recorded(
            model.FULL_ENGINE, model.FullInputs(world, state, np.float64(1.0), np.float64(0.1)), steps=5
        ),
        "run_batched": lambda: engine.run_batched(
            lambda p: ct.reduced_train(p, steps=3).records["context_reliance"], params2
        ),
        "simulate": lambda: ct.simulate(config),
        "check_finite": lambda: simulation.check_finite(config, -1, records),
        "check_precision": lambda: simulation.check_precision(config, recorded),
        "get_engine": lambda: simulation.get_engine("reduced").name,
        # the model (SPEC 1-4)
        "build_world": lambda: ct.build_world(config),
        "embeddings": lambda: model.embeddings(vocab),
        "value_table": lambda: model.value_table(
            vocab, o_c=0.5, o_r=0.0, self_copy_tokens=np.array([41]), self_copy_strength=np.array([0.2]),
            fact_subjects=np.array([0]), fact_answers=np.array([42]), fact_strength=np.array([0.6]),
        ),
        "make_world": lambda: model.make_world(
            vocab, world.value_table, context=world.context, subject=world.subject, target=world.target,
            has_context=world.has_context, data_class=world.data_class,
            probe=(int(world.probe_context), int(world.probe_subject), int(world.probe_memorized)),
        ),
        "pretrained_state": lambda: ct.pretrained_state(world, config.relation_score),
        "forward": lambda: ct.forward(state, world, world.context, world.subject, world.has_context),
        "attention": lambda: model.attention(state, world, x, world.has_context),
        "value_logits": lambda: ct.value_logits(state, world, np.arange(3)),
        "cross_entropy": lambda: model.cross_entropy(logits, np.asarray([3])),
        "point_losses": lambda: model.point_losses(state, world),
        "probe_logits": lambda: model.probe_logits(state, world),
        "relation_query": lambda: model.relation_query(state, world),
        "training_loss": lambda: ct.training_loss(state, world),
        "context_reliance": lambda: ct.context_reliance(state, world),
        "metrics": lambda: ct.metrics(state, world),
        "probe_metrics": lambda: model.probe_metrics(state, world),
        "class_metrics": lambda: model.class_metrics(state, world),
        "gd_step": lambda: ct.gd_step(state, world, 1.0, 0.1),
        "train": lambda: ct.train(world, state, 1.0, 0.1, steps=5),
        # the reduced dynamics (SPEC 6)
        "reduced_params": lambda: ct.reduced_params(config),
        "ToyParams.from_config": lambda: ct.ToyParams.from_config(config),
        "simulate_many": lambda: ct.simulate_many(ct.ToyParams.stack([ct.ToyParams.from_config(config)]), steps=3),
        "reduced_state_names": lambda: ct.reduced_state_names(),
        "symbol_values": lambda: reduced.symbol_values(ct.ToyParams.from_config(config)),
        "reduced_model": lambda: len(reduced.reduced_model().state),
        "reduced_initial_state": lambda: ct.reduced_initial_state(params),
        "reduced_train": lambda: ct.reduced_train(params, steps=5),
        "reduced_step": lambda: reduced.reduced_step(rstate, params),
        "reduced_velocity": lambda: reduced.reduced_velocity(rstate, params),
        "reduced_velocity_jit": lambda: reduced.reduced_velocity_jit(rstate, params),
        "reduced_loss_and_gradient": lambda: reduced.reduced_loss_and_gradient(rstate, params),
        "reduced_metrics": lambda: reduced.reduced_metrics(rstate, params),
        "reduced_metrics_jit": lambda: reduced.reduced_metrics_jit(rstate, params),
        "general_train": lambda: reduced.general_train(params, steps=5),
        "minimal_train": lambda: reduced.minimal_train(params, steps=5),
        "minimal_summary": lambda: reduced.minimal_summary(params, steps=5, regime=reduced.GENERAL).records,
        "summary_step": lambda: reduced.summary_step(reduced.GENERAL, params)[1],
        "minimal_initial_state": lambda: reduced.minimal_initial_state(params, reduced.GENERAL),
        "minimal_metrics": lambda: reduced.minimal_metrics(
            tuple(np.zeros(len(reduced.minimal_state_names(reduced.GENERAL)))), params, reduced.GENERAL
        ),
        # the paper (SPEC 5 and beyond)
        "check_assumptions": lambda: ct.check_assumptions(),
        "lemma3_value_logits": lambda: ct.lemma3_value_logits(),
        "lemma4_margins": lambda: str(ct.lemma4_margins()),
        "lemma4_values": lambda: ct.lemma4_values(),
        "eta_star": lambda: ct.eta_star(grid=20),
        "proposition2": lambda: ct.proposition2(),
        "proposition3": lambda: ct.proposition3(),
        "shared_direction_gradient": lambda: ct.shared_direction_gradient(),
        "theorem1": lambda: ct.theorem1(),
        "mc_trajectory": lambda: paper.mc_trajectory({"steps": 20}),
        "inversion_peak": lambda: ct.inversion_peak({"steps": 60}),
        "inversion_depth": lambda: paper.inversion_depth({"steps": 60}),
        "plateau": lambda: ct.plateau(),
        "plateau_expressions": lambda: str(paper.plateau_expressions()),
        "late_time_law": lambda: paper.late_time_law().limit,
        "late_time_expressions": lambda: str(paper.late_time_expressions()),
        "saturation_amplitudes": lambda: paper.saturation_amplitudes(),
        "infinite_horizon_boundary": lambda: paper.infinite_horizon_boundary(),
        "value_rate_effect": lambda: ct.value_rate_effect({"steps": 20}, ratios=(0.0, 0.1)),
        "phase_boundary": lambda: ct.phase_boundary({"steps": 60}, bounds=(0.0, 1.0), threshold=0.2),
        "gradient_flow": lambda: ct.gradient_flow(t_max=5.0).solution(5.0),
        "flow_peak": lambda: ct.flow_peak(t_max=60.0, grid=40),
        # the phenomena (SPEC 7)
        "stack_worlds": lambda: phenomena.stack_worlds([world, world]),
        "pad_world": lambda: phenomena.pad_world(world, 24),
        "train_batch": lambda: phenomena.train_batch(
            two, np.asarray([1.0, 2.0]), np.asarray([0.0, 0.1]), relation_score=-30.0, steps=5
        ),
        "kl_divergence": lambda: phenomena.kl_divergence(np.asarray([0.2, 0.8]), np.asarray([0.5, 0.5])),
        "partial_correlation": lambda: phenomena.partial_correlation(
            np.arange(6.0), np.arange(6.0) ** 2, np.sin(np.arange(6.0))
        ),
        "rank_correlation": lambda: phenomena.rank_correlation(np.asarray([0.1, 0.5, 0.4]), np.asarray([0.2, 0.6, 0.1])),
        # sweeps
        "sweep_spec": lambda: ct.sweep_spec(base={"steps": 3}, grid={"lr_kq": [1.0, 2.0]}).to_json(),
        "run_sweep": lambda: ct.run_sweep(spec).dataset,
        "sweep": lambda: ct.sweep(spec),
        "load": lambda: sweep.load(sweep_file),
        # the bridge's toy side
        "toy_parameters": lambda: toyfit.toy_parameters(0.6, 0.2, 0.5),
        "toy_start_reliance": lambda: toyfit.toy_start_reliance(0.6, 0.2),
        "delta_c_for_start": lambda: toyfit.delta_c_for_start(0.6, 0.3),
        "context_bias_for_start": lambda: toyfit.context_bias_for_start(toy, 0.3),
        "simulate_toy": lambda: toyfit.simulate_toy(toy, steps=30),
        "fit_time_scale": lambda: toyfit.fit_time_scale(steps, values, steps, values),
        "fit_curve": lambda: toyfit.fit_curve(steps, values, toy, extensions=False, horizon=30),
        "joint_fit": lambda: toyfit.joint_fit(steps, values, n_starts=1, horizon=30, n_dense=8),
        "schedule_time": lambda: toyfit.schedule_time(np.arange(5.0), warmup=2.0, decay="cosine", total=4.0),
        "smooth_baseline": lambda: toyfit.smooth_baseline(steps[:6], values[:6], 3, steps[6:8]),
        # the advisor
        "advise": lambda: advisor.advise(delta_m=0.6, delta_c=0.2, cs_fraction=0.5, horizon=20, target=0.7),
        "fit_inputs": lambda: advisor.fit_inputs(fit_file),
    }
    """
)

RUNNER = textwrap.dedent(
    """
    import dataclasses, inspect, json, sys, tempfile
    import jax
    import numpy as np

    tmp = tempfile.mkdtemp()
    assert not jax.config.jax_enable_x64
    exec(CALLS_SOURCE)
    recorded_steps_ = ct.recorded_steps(5, 1)

    def leaves(x):
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return [leaf for f in dataclasses.fields(x) for leaf in leaves(getattr(x, f.name))]
        if isinstance(x, dict):
            return [leaf for k in sorted(x, key=str) for leaf in leaves(x[k])]
        if isinstance(x, (list, tuple)):
            return [leaf for v in x for leaf in leaves(v)]
        if hasattr(x, "data_vars"):  # an xarray Dataset
            return [leaf for name in sorted(x.variables) for leaf in leaves(x[name].values)]
        return [x]

    def same(a, b):
        la, lb = leaves(a), leaves(b)
        if len(la) != len(lb):
            return f"{len(la)} leaves vs {len(lb)} with float64"
        for u, v in zip(la, lb):
            if hasattr(u, "dtype") and np.dtype(u.dtype) == np.float32:
                return "float32 arrays"
            if isinstance(u, (float, np.floating)) or (hasattr(u, "dtype") and np.dtype(u.dtype).kind in "fc"):
                u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
                if u.shape != v.shape or not np.allclose(u, v, rtol=1e-12, atol=1e-300, equal_nan=True):
                    return "float32 answer (differs from the float64 one)"
            elif hasattr(u, "dtype") and np.dtype(u.dtype) != object:
                if not np.array_equal(np.asarray(u), np.asarray(v)):
                    return "differs from the float64 answer"
            elif not callable(u) and str(u) != str(v):
                return "differs from the float64 answer"
        return None

    outcome = {}
    for name, call in CALLS.items():
        try:
            got = call()
        except ct.Float64Required:
            outcome[name] = "refused"
            continue
        except Exception as err:
            outcome[name] = f"error without float64: {type(err).__name__}: {err}"[:300]
            continue
        if jax.config.jax_enable_x64:
            outcome[name] = "turned float64 on for the whole process"
            jax.config.update("jax_enable_x64", False)
            continue
        with jax.enable_x64(True):
            problem = same(got, call())
        outcome[name] = problem or "float64"
    public = set()
    import cpi_theory
    for face in ("", ".config", ".engine", ".model", ".reduced", ".simulation", ".paper", ".phenomena",
                 ".sweep", ".figures", ".fit", ".bridge", ".advise"):
        module = __import__("cpi_theory" + face, fromlist=["x"])
        public |= {n for n in dir(module) if not n.startswith("_") and inspect.isfunction(getattr(module, n))}
    print(json.dumps({"outcome": outcome, "public": sorted(public)}))
    """
)


def test_every_public_theory_function_refuses_float32_or_answers_in_float64(tmp_path):
    script = tmp_path / "calls.py"
    script.write_text(f"CALLS_SOURCE = {CALLS!r}\n{RUNNER}")
    env = {"PATH": "", "JAX_PLATFORMS": "cpu", "HOME": str(tmp_path)}  # no JAX_ENABLE_X64: JAX's default
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    outcome, public = report["outcome"], set(report["public"])
    # Every public function is called here or named in NOT_CALLED with a reason (a new one must be added).
    assert public - set(outcome) - set(NOT_CALLED) == set()
    assert set(NOT_CALLED) <= public
    wrong = {name: result for name, result in outcome.items() if result not in ("refused", "float64")}
    assert wrong == {}, "\n" + "\n".join(f"{name}: {result}" for name, result in sorted(wrong.items()))
    assert outcome["simulate"] == outcome["run_sweep"] == outcome["require_float64"] == "refused"
