# The run config every training uses, and the trainings: one per (source, variant, seed).


rule run_config:
    input:
        weights=weights_inputs,
    output:
        RUN_CONFIG,
    params:
        base=config["model_config"],
        sets=run_config_sets,
    log:
        f"{LOGS}/run_config.log",
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip run-config {params.base} {params.sets} --out {output} > {log} 2>&1"


rule train:
    input:
        data=PREPARED.format(dataset="{source}"),
        run_config=RUN_CONFIG,
        tracking=tracking_inputs,
    output:
        model=f"{TRAIN_DIR}/model.pt",
        history=f"{TRAIN_DIR}/history.json",
        run=f"{TRAIN_DIR}/run.json",
    params:
        data=lambda wildcards, input: os.path.dirname(input.data),
        out=lambda wildcards, output: os.path.dirname(output.model),
        env=tracking_env(),
        tracking=tracking_flag(),
    log:
        f"{LOGS}/train/{{source}}/{{variant}}/seed{{seed}}.log",
    threads: 4
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=720,
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "{params.env} wmoe-clip train --config {input.run_config} --source {wildcards.source}"
        " --data {params.data} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --out {params.out} {params.tracking} > {log} 2>&1"
