# Config validation, wildcard constraints and input functions shared by the stage files.
from pipeline.config import validate_config
from pipeline.workflow import CONDITIONS, REPORT_FILES, Layout

validate_config(config)
L = Layout(config)
CONFIG_FILE = L.write_resolved()


wildcard_constraints:
    corpus="|".join(L.corpora),
    view="clean|indomain|ood",
    teacher=L.regex(config["teachers"]),
    student=L.regex(config["students"]) if config["students"] else "$^",
    upstream=L.regex([*config["teachers"], *config["students"]]),
    task=L.regex(config["downstream"]["tasks"]),
    condition="clean|indomain|ood|real",
    shard=r"\d+",


def all_outputs():
    return L.all_outputs()
