# The MLflow store is created once, before any tracked job. Jobs also create a missing store safely
# themselves (a lock beside the SQLite file, docs/PIPELINE.md §3.2's race), so this only saves them the wait.


rule tracking_init:
    output:
        TRACKING_DONE,
    params:
        uri=TRACKING_URI,
        experiment=config["mlflow"]["experiment"],
    log:
        f"{LOGS}/tracking_init.log",
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip tracking-init --uri '{params.uri}' --experiment '{params.experiment}' --marker {output} > {log} 2>&1"
