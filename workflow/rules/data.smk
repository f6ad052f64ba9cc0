# Raw data (downloaded, or generated stand-ins for the demo), the prepared manifests, the weights.

if config["data_source"] == "download":

    rule download:
        output:
            RAW_READY,
        params:
            dest=lambda wildcards, output: os.path.dirname(output[0]),
        log:
            f"{LOGS}/download/{{dataset}}.log",
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "wmoe-clip download {wildcards.dataset} --dest {params.dest} > {log} 2>&1"

else:

    rule synth:
        output:
            directory(RAW),
        params:
            size=f"--size {config['synth_size']}" if config["synth_size"] else "",
            seed=config["synth_seed"],
        log:
            f"{LOGS}/synth/{{dataset}}.log",
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "wmoe-clip synth {wildcards.dataset} --out {output} {params.size} --seed {params.seed} > {log} 2>&1"

    # A custom target placed at raw/custom/{custom} in the config is generated too (the demo's).
    rule synth_custom:
        output:
            directory(CUSTOM_RAW),
        params:
            size=f"--size {config['synth_size']}" if config["synth_size"] else "",
            seed=config["synth_seed"],
        log:
            f"{LOGS}/synth/custom/{{custom}}.log",
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "wmoe-clip synth folder --out {output} {params.size} --seed {params.seed} > {log} 2>&1"


rule prepare:
    input:
        raw=RAW_READY,
    output:
        meta=PREPARED,
        report=PREPARE_REPORT,
    params:
        raw=raw_dir,
        out=lambda wildcards, output: os.path.dirname(output.meta),
        strict="--strict" if config["strict_counts"] else "",
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip prepare {wildcards.dataset} --raw {params.raw} --out {params.out} {params.strict} > {log} 2>&1"


rule prepare_custom:
    input:
        data=custom_source,
    output:
        meta=CUSTOM_PREPARED,
        report=CUSTOM_PREPARE_REPORT,
    params:
        out=lambda wildcards, output: os.path.dirname(output.meta),
    log:
        f"{LOGS}/prepare/custom/{{custom}}.log",
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip prepare folder --raw {input.data} --out {params.out} --name {wildcards.custom} > {log} 2>&1"


rule download_weights:
    output:
        WEIGHTS,
    params:
        dest=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        f"{LOGS}/download_weights.log",
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip download-weights --dest {params.dest} > {log} 2>&1"
