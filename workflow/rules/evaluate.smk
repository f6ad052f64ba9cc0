# Evaluations: one per (source, target, run, seed); JSON in the format of ARCHITECTURE.md. A target
# is a registry dataset or a custom target (the config's custom_targets). The model is a training's
# checkpoint, or for a method that does not train (source `none`) its run config.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=EVAL_JSON,
        figure=EVAL_FIGURE,
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
        model=model_option,
        env=tracking_env(),
        tracking=tracking_flag(),
    log:
        f"{LOGS}/evaluate/{{source}}/{{target}}/{{variant}}/seed{{seed}}.log",
    threads: 4
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=120,
    # One cluster submission can carry several evaluations (--group-components evaluate=N).
    group:
        "evaluate"
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "{params.env} wmoe-clip evaluate {params.model} --target {wildcards.target}"
        " --data {params.data} --out {output.metrics} --figure {output.figure} {params.tracking} > {log} 2>&1"
