# Table 1, Table 2 and the HTML page, rendered from the results folder alone.


rule report:
    input:
        evaluations=EVAL_JSONS,
        histories=HISTORIES,
        paper="config/paper_results.yaml",
        references=REFERENCES,
    output:
        html=REPORT_FILES[0],
        table1=REPORT_FILES[1],
        table2=REPORT_FILES[2],
    params:
        # A function, not the bare prefix: snakemake --lint flags hard-coded path prefixes.
        results=lambda wildcards, input: PATHS.results_dir,
        out=lambda wildcards, output: os.path.dirname(output.html),
    log:
        PATHS.log("report"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip report --results {params.results} --paper {input.paper} --out {params.out} > {log} 2>&1"
