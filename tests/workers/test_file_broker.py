"""The on-disk transport never shows a consumer a partly written message."""

import json
import os
import uuid

from kombu import Connection

from workers import file_broker


def test_a_message_appears_only_when_complete(tmp_path, monkeypatch):
    folder = tmp_path / "queue"
    folder.mkdir()
    # A queue name of its own: kombu keeps exchange bindings per transport class, shared
    # with the suite's other connections to the same transport.
    name = f"q{uuid.uuid4().hex}"
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        if os.path.dirname(dst) != str(folder):  # kombu's own bookkeeping files
            return real_replace(src, dst)
        # At the moment of the rename: the whole message is in a name the consumer skips,
        # and nothing under the final name exists yet.
        names = os.listdir(folder)
        seen.append(names)
        assert not any(n.partition(".")[2] == f"{name}.msg" for n in names)
        assert json.loads((folder / os.path.basename(src)).read_bytes())
        real_replace(src, dst)

    monkeypatch.setattr(file_broker.os, "replace", replace)
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder),
               "control_folder": str(tmp_path / "control")}
    with Connection(f"{file_broker.ALIAS}://", transport_options=options) as conn:
        queue = conn.SimpleQueue(name)
        queue.put({"result_id": 7})
        assert seen and seen[0][0].startswith(".")
        message = queue.get(timeout=30)
        assert message.payload == {"result_id": 7}
        message.ack()
        queue.close()
    assert os.listdir(folder) == []
