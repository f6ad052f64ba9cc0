# Raw data (downloaded, or generated stand-ins for the demo), the prepared manifests, the weights.

if DOWNLOAD:

    rule download:
        output:
            RAW_READY,
        params:
            dest=lambda wildcards, output: os.path.dirname(output[0]),
        log:
            PATHS.log("download"),
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "wmoe-clip download {wildcards.dataset} --dest {params.dest} > {log} 2>&1"

else:

    rule synth:
        output:
            directory(PATHS.resources(layout.RAW)),
        params:
            size=f"--size {config['synth_size']}" if config["synth_size"] else "",
            seed=config["synth_seed"],
        log:
            PATHS.log("synth"),
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "wmoe-clip synth {wildcards.dataset} --dest {output} {params.size} --seed {params.seed} > {log} 2>&1"

    # A custom target placed at raw/custom/{custom} in the config is generated too (the demo's).
    rule synth_custom:
        output:
            directory(PATHS.resources(layout.CUSTOM_RAW)),
        params:
            size=f"--size {config['synth_size']}" if config["synth_size"] else "",
            seed=config["synth_seed"],
        log:
            PATHS.log("synth_custom"),
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "wmoe-clip synth folder --dest {output} {params.size} --seed {params.seed} > {log} 2>&1"


rule prepare:
    input:
        raw=RAW_READY,
    output:
        meta=PATHS.resources(layout.PREPARED),
        report=PATHS.resources(layout.PREPARE_REPORT),
    params:
        raw=raw_dir,
        out=lambda wildcards, output: os.path.dirname(output.meta),
        strict="--strict" if config["strict_counts"] else "",
    log:
        PATHS.log("prepare"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip prepare {wildcards.dataset} --raw {params.raw} --out {params.out} {params.strict} > {log} 2>&1"


rule prepare_custom:
    input:
        data=custom_source,
    output:
        meta=PATHS.resources(layout.CUSTOM_PREPARED),
        report=PATHS.resources(layout.CUSTOM_PREPARE_REPORT),
    params:
        out=lambda wildcards, output: os.path.dirname(output.meta),
    log:
        PATHS.log("prepare_custom"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip prepare folder --raw {input.data} --out {params.out} --name {wildcards.custom} > {log} 2>&1"


# One per backbone whose weights a run config reads (the plan's weights files).
rule download_weights:
    output:
        WEIGHTS,
    params:
        dest=lambda wildcards, output: os.path.dirname(output[0]),
        backbone=weights_backbone,
    log:
        PATHS.log("download_weights"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip download-weights --backbone {params.backbone} --dest {params.dest} > {log} 2>&1"
