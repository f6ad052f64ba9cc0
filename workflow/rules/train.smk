# The run config of each method, and the trainings: one per (source, run, seed), the run being a variant
# of the main method or a baseline that trains.


rule run_config:
    input:
        weights=weights_inputs,
    output:
        RUN_CONFIG,
    params:
        base=run_config_base,
        sets=run_config_sets,
    log:
        PATHS.log("run_config"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip run-config {params.base} {params.sets} --out {output} > {log} 2>&1"


rule train:
    input:
        data=PATHS.resources(layout.PREPARED).format(dataset="{source}"),
        run_config=train_run_config,
        tracking=tracking_inputs,
    output:
        model=PATHS.results(layout.MODEL),
        history=PATHS.results(layout.HISTORY),
        run=PATHS.results(layout.RUN_RECORD),
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.model),
        variant=variant_option,
        # One place for the feature cache of every train and evaluate job (the evaluations of a training
        # source read what its training built).
        cache=FEATURE_CACHE,
        env=tracking_env(),
        tracking=tracking_flag(),
    log:
        PATHS.log("train"),
    threads: 4
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=720,
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "{params.env} wmoe-clip train --config {input.run_config} --source {wildcards.source}"
        " --data {params.data} {params.variant} --seed {wildcards.seed}"
        " --out {params.out} --cache-dir {params.cache} {params.tracking} > {log} 2>&1"
