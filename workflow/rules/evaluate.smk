# Evaluations: one job per (target, encoder pass) scores every model evaluated on the target whose run
# config shares that backbone configuration (all runs, seeds, sources and methods), from one pass of
# the target's images through the frozen encoder, and writes each model's JSON (format of
# ARCHITECTURE.md) and figure as a single evaluation would. A target is a registry dataset or a custom
# target; a model is a training's checkpoint, or for a method that does not train its run config.
# A job's outputs are its models' files, so each job (wmoe_clip.plan.EvaluateJob) is a rule of its
# own, named evaluate_{target}_{backbone digest}; threads and resources set for `evaluate` apply to all.
# The released-checkpoint check's evaluations have jobs of their own (evaluate_released_{target}_{digest}):
# they need no training.

for job, log_pattern in EVALUATE_JOBS:

    rule:
        name:
            job.name
        input:
            models=job.inputs(PATHS),
            data=job.data(PATHS),
            tracking=tracking_inputs(None),
        output:
            job.outputs(PATHS),
        params:
            target=job.target,
            data=lambda wildcards, input: os.path.dirname(input.data),
            options=" ".join(job.options(PATHS)),
            models=" ".join(job.model_args(PATHS)),
            env=tracking_env(),
            tracking=tracking_flag(),
        log:
            PATHS.log(log_pattern).format(target=job.target, backbone=job.backbone),
        threads: EVALUATE_THREADS
        resources:
            **EVALUATE_RESOURCES,
        # One cluster submission can carry several evaluate jobs (--group-components evaluate=N).
        group:
            "evaluate"
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "{params.env} wmoe-clip evaluate --target {params.target} --data {params.data} {params.options}"
            " {params.tracking} {params.models} > {log} 2>&1"
