# The released-checkpoint check, `snakemake released_check`: AnomalyCLIP's two released checkpoints
# fetched (or placed by hand), imported into the harness and evaluated with no training on every target
# of the config (the evaluate jobs are in evaluate.smk), then reported beside AnomalyCLIP's own tables and
# official per-class logs.

if config["weights"]["download"]:

    # Its output is the download's record, never the checkpoints: a copy placed by hand is checked, not
    # removed before the job runs.
    rule download_released:
        output:
            RELEASED.download_record(PATHS),
        params:
            dest=lambda wildcards: os.path.dirname(WEIGHTS),
        log:
            PATHS.log("download_released"),
        conda:
            "../envs/wmoe-clip.yaml"
        shell:
            "wmoe-clip download-weights --dest {params.dest} --anomalyclip --skip-clip > {log} 2>&1"


rule import_released:
    input:
        checkpoint=released_inputs,
        run_config=RUN_CONFIG.format(method=layout.RELEASED_METHOD),
    output:
        PATHS.results(layout.IMPORTED_MODEL).format(source="{source}", run=layout.RELEASED_RUN),
    params:
        method=layout.RELEASED_METHOD,
        checkpoint=released_checkpoint,
    log:
        PATHS.log("import_released"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip import-checkpoint --from {params.method} {params.checkpoint} --config {input.run_config}"
        " --out {output} > {log} 2>&1"


rule report_released:
    input:
        evaluations=RELEASED_EVAL_JSONS,
        paper="config/paper_results.yaml",
        references=REFERENCES,
    output:
        RELEASED_REPORT_FILES,
    params:
        results=lambda wildcards, input: PATHS.results_dir,
        out=lambda wildcards, output: os.path.dirname(output[0]),
    log:
        PATHS.log("report_released"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip report --results {params.results} --paper {input.paper} --out {params.out} > {log} 2>&1"


rule released_check:
    input:
        RELEASED_REPORT_FILES,
