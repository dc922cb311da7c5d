"""How langgraph_v1.eventlog and langgraph_v1.json were written: by EventlogSaver as
of commit ab16d19 (the layout before the entry log), saved from git as
/tmp/legacy/old_langgraph.py with its relative imports made absolute, running
``python tests/integrations/data/langgraph_v1_gen.py OUT.eventlog OUT.json`` from
the repository root; the JSON is what that saver's ``list()`` gave.  Kept for the
record: the files are what such stores hold, not to be written again."""

import contextlib
import json
import os
import sys

sys.path[:0] = [os.getcwd(), "/tmp/legacy"]

import old_langgraph  # type: ignore[import-not-found]  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402

from tests.integrations.test_langgraph_saver import _graph, _summary  # noqa: E402

path = sys.argv[1]
for suffix in ("", "-wal", "-shm"):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path + suffix)
with old_langgraph.EventlogSaver(path) as saver:
    app = _graph().compile(checkpointer=saver)
    cfg = {"configurable": {"thread_id": "t1"}}
    app.invoke({"messages": [HumanMessage(content="hello", id="h1")]}, cfg)
    app.invoke({"messages": [HumanMessage(content="again", id="h2")]}, cfg)
    history = list(app.get_state_history(cfg))
    app.invoke(None, history[len(history) // 2].config)  # a fork from an old checkpoint
    got = [_summary(t) for t in saver.list(None)]
with open(sys.argv[2], "w") as f:
    json.dump(got, f, indent=1)
