# The MLflow store is created once, before any tracked job. Jobs also create a missing store safely
# themselves (a lock beside the SQLite file, docs/PIPELINE.md §3.2's race), so this only saves them the wait.


rule tracking_init:
    output:
        TRACKING_DONE,
    params:
        uri=PLAN.tracking_uri,
        experiment=config["mlflow"]["experiment"],
    log:
        PATHS.log("tracking_init"),
    conda:
        "../envs/wmoe-clip.yaml"
    shell:
        "wmoe-clip tracking-init --uri '{params.uri}' --experiment '{params.experiment}' --marker {output} > {log} 2>&1"
