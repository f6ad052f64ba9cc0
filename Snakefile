# Entry point. `include` does not carry the included file's default target, so it is set here
# (docs/PIPELINE.md §1.3).


include: "workflow/Snakefile"


rule default:
    default_target: True
    input:
        rules.all.input,
