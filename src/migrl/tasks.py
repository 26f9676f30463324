"""MIG-Bench's ten tasks, split as the paper trains (in-domain: MGrounding-630k has them) and tests
(out-of-domain). The embedded world renders the same ten; MIG-Bench's scorer and the sources read them here."""

ID_TASKS = ("common_object", "diff", "region", "refer_grounding")
OOD_TASKS = ("group_grounding", "correspondence", "object_tracking", "multi_view", "reasoning", "view_diff")
TASKS = ID_TASKS + OOD_TASKS
