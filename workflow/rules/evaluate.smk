# Evaluations: one job per (target, encoder pass) scores every model evaluated on the target whose run
# config shares that backbone configuration (all runs, seeds, sources and methods), from one pass of
# the target's images through the frozen encoder, and writes each model's JSON (format of
# ARCHITECTURE.md) and figure as a single evaluation would. A target is a registry dataset or a custom
# target; a model is a training's checkpoint, or for a method that does not train its run config.
# A job's outputs are its models' files, so each job is a rule of its own, named
# evaluate_{target}_{backbone digest}; threads and resources set for `evaluate` apply to all of them.

for job_name, job in EVALUATE_JOBS.items():

    rule:
        name:
            job_name
        input:
            models=evaluate_job_inputs(job),
            data=target_data(job["target"]),
            tracking=tracking_inputs(None),
        output:
            evaluate_job_outputs(job),
        params:
            target=job["target"],
            data=lambda wildcards, input: os.path.dirname(input.data),
            options=evaluate_job_options(job),
            models=evaluate_job_models(job),
            env=tracking_env(),
            tracking=tracking_flag(),
        log:
            f"{LOGS}/evaluate/{job['target']}/{job['backbone']}.log",
        threads: 4
        resources:
            gpu=1,
            mem_mb=32000,
            runtime=120,
        # One cluster submission can carry several evaluate jobs (--group-components evaluate=N).
        group:
            "evaluate"
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "{params.env} wmoe-clip evaluate --target {params.target} --data {params.data} {params.options}"
            " {params.tracking} {params.models} > {log} 2>&1"

    apply_evaluate_settings(job_name)
