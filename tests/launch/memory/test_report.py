"""launch.memory.report: a small report, written by hand in GiB multiples, renders line by line."""

from launch.memory.report import render, row

G = 2**30


def small_report():
    def prog(args, others, **transient):
        return dict(args=args, others=others, transient=transient, peak=0)

    return dict(
        config="configs/x.py",
        topology=dict(name="v4-16", chips=8, devices=8, hosts=2),
        backend="cpu",
        mesh={"data": 1, "fsdp": 8, "tensor": 1},
        hbm_bytes=32 * G,
        models={
            "policy": dict(
                params=1.5e9,
                source="preset qwen2_1_5b",
                dtype="bfloat16",
                param_dtype="float32",
                remat=True,
            ),
            "ref": dict(params=1.5e9, source="", dtype="", param_dtype="", remat=True),
        },
        analytic=dict(
            params={"policy": G, "ref": G // 2},
            adam=2 * G,
            kv_cache=G // 4,
            programs={
                "update": prog(4 * G, G, acts=G),
                "sample": prog(G, 3 * G, kv=G // 4),
                "score": prog(2 * G, 2 * G, logits=G // 2),
            },
        ),
        compiled={
            "update": dict(
                argument=5 * G,
                output=2 * G,
                alias=G,
                temp=3 * G,
                generated_code=0,
                lower_s=1.5,
                compile_s=20.0,
            )
        },
        peaks={
            "update": dict(analytic=6 * G, compiled=10 * G, refused=False),
            "sample": dict(analytic=4.25 * G, compiled=None, refused=False),
            "score": dict(analytic=4.5 * G, compiled=None, refused=False),
        },
        basis="analytic",
        worst="update",
        needed_bytes=6 * G,
        fits=True,
        fits_on={
            "v4-16": dict(peak=6 * G, hbm=32 * G, fits=True),
            "v5e-16": dict(peak=20 * G, hbm=16 * G, fits=False),
        },
    )


def test_row_puts_analytic_and_compiled_gib_in_columns():
    assert row("label", G, 2 * G) == "  label" + " " * 51 + "    1.000" + "     2.000"
    assert row("label", None, G, indent=4) == "    label" + " " * 49 + " " * 9 + "     1.000"
    assert row("label") == "  label"


def test_render_a_small_report():
    assert render(small_report()) == [
        "launch.aot: configs/x.py on v4-16 (8 chips = 8 JAX devices, 2 hosts), mesh (data, fsdp, "
        "tensor) = (1, 8, 1), compiled by XLA:CPU",
        "  policy     1.50B params, float32 params, bfloat16 compute, remat=True; "
        "shapes: preset qwen2_1_5b",
        "  ref      a copy of the policy (as rl/runtime/model_builder.frozen_copy makes it)",
        "",
        "per device, GiB                                            analytic  compiled",
        "  policy parameters                                           1.000",
        "  ref parameters                                              0.500",
        "  Adam mu + nu (policy + critic)                              2.000",
        "  KV caches of one rollout (in sample's temporaries)          0.250",
        " update (lowered 1.5 s, compiled 20.0 s)",
        "  arguments: policy+critic params, Adam, minibatch            4.000     5.000",
        "    compiled / analytic                                                 1.250",
        "    acts                                                      1.000",
        "  temporaries (analytic: the sum above)                       1.000     3.000",
        "  outputs not aliased to arguments, generated code                      1.000",
        "  resident meanwhile (other models, Adam, rollout)            1.000",
        "  PEAK update                                                 6.000    10.000",
        " sample (not compiled)",
        "  arguments: policy params, prompts                           1.000",
        "    kv                                                        0.250",
        "  temporaries (analytic: the sum above)                       0.250",
        "  resident meanwhile (other models, Adam, rollout)            3.000",
        "  PEAK sample                                                 4.250",
        " score (not compiled)",
        "  arguments: every model's params, the rollout                2.000",
        "    logits                                                    0.500",
        "  temporaries (analytic: the sum above)                       0.500",
        "  resident meanwhile (other models, Adam, rollout)            2.000",
        "  PEAK score                                                  4.500",
        "",
        "needed per device: 6.000 GiB (update, analytic); available 32.00 GiB: fits",
        "  (the analytic count decides: XLA:CPU's temporaries overstate a TPU's; --backend=tpu "
        "compiles with XLA:TPU where libtpu is installed)",
        "fits on (analytic peak/HBM GiB): v4-16 (6.0/32)",
        "does not fit on: v5e-16 (20.0/16)",
    ]


def test_render_names_a_refused_program_and_nothing_compiled():
    r = small_report()
    r["compiled"] = {}
    r["fits_on"] = {}
    lines = render(r)
    assert lines[0].endswith("(1, 8, 1), nothing compiled")
    assert " update (not compiled)" in lines
    assert not any(line.startswith("fits on") or "analytic count decides" in line for line in lines)

    r["backend"] = "tpu"
    r["compiled"] = {
        "update": dict(
            refused="RESOURCE_EXHAUSTED: Ran out of memory",
            temp=40 * G,
            argument=None,
            output=0,
            alias=0,
            generated_code=0,
            lower_s=1.0,
            compile_s=2.0,
        )
    }
    r["fits"] = False
    lines = render(r)
    assert lines[0].endswith("compiled by XLA:TPU")
    i = lines.index(" update (lowered 1.0 s, compiled 2.0 s)")
    assert lines[i + 1] == "  XLA:TPU refused it: RESOURCE_EXHAUSTED: Ran out of memory"
    assert lines[i + 2] == "  arguments: policy+critic params, Adam, minibatch            4.000"
    assert "  temporaries (analytic: the sum above)                       1.000    40.000" in lines
    assert lines[-1].endswith("available 32.00 GiB: DOES NOT FIT")
