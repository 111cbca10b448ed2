"""A client generated from /openapi.json with openapi-python-client works: it uploads photos as
files, reads enrol and verify answers as typed models, and reads refusals (including a face the
engine does not find) as the Problem model instead of crashing."""

from __future__ import annotations

import importlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tests.helpers import missing_resource
from tests.service.conftest import Server, face

BIDEN_1 = "Joseph_Biden/face_recognition_biden.jpg"
BIDEN_2 = "Joseph_Biden/face_recognition_biden2.jpg"


def generate(server: Server, out: Path) -> Path:
    tool = Path(sys.executable).parent / "openapi-python-client"
    if not tool.exists():
        missing_resource("openapi-python-client is missing: ./scripts/setup.sh --test installs it")
    spec = out / "openapi.json"
    spec.write_text(json.dumps(server.client().get("/openapi.json").json()))
    env_path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    done = subprocess.run(
        [str(tool), "generate", "--path", str(spec), "--output-path", str(out / "fgclient"),
         "--meta", "none"],
        capture_output=True, text=True, env={"PATH": env_path}, timeout=300,
    )  # fmt: skip
    assert (out / "fgclient" / "client.py").exists(), done.stdout + done.stderr
    return out


def test_generated_client_enrols_verifies_and_reads_problems(
    server: Server, shared_data: Path, tmp_path: Path
) -> None:
    root = generate(server, tmp_path)
    sys.path.insert(0, str(root))
    try:
        client_mod = importlib.import_module("fgclient.client")
        models = importlib.import_module("fgclient.models")
        types = importlib.import_module("fgclient.types")
        create = importlib.import_module("fgclient.api.subjects.subject_create_v1_subjects_post")
        consent = importlib.import_module(
            "fgclient.api.consent.consent_grant_v1_subjects_subject_id_consents_post"
        )
        tenant = importlib.import_module("fgclient.api.tenant.tenant_get_v1_tenant_get")
        enroll = importlib.import_module(
            "fgclient.api.faces.enroll_v1_subjects_subject_id_enroll_post"
        )
        verify = importlib.import_module(
            "fgclient.api.faces.verify_v1_subjects_subject_id_verify_post"
        )
        client = client_mod.AuthenticatedClient(base_url=server.url, token=server.admin_key)

        created = create.sync(client=client, body=models.SubjectCreate(subject_id="generated"))
        assert isinstance(created, models.Subject) and created.subject_id == "generated"
        version = tenant.sync(client=client).consent_text_version
        given = consent.sync(
            "generated",
            client=client,
            body=models.ConsentCreate(text_version=version, method="sdk"),
        )
        assert isinstance(given, models.Consent)

        def photo(data: bytes) -> object:
            return types.File(
                payload=io.BytesIO(data), file_name="face.jpg", mime_type="image/jpeg"
            )

        body = models.BodyEnrollV1SubjectsSubjectIdEnrollPost(
            image=photo(face(shared_data, BIDEN_1))
        )
        enrolled = enroll.sync("generated", client=client, body=body)
        assert isinstance(enrolled, models.Enrolled), enrolled
        body = models.BodyVerifyV1SubjectsSubjectIdVerifyPost(
            image=photo(face(shared_data, BIDEN_2))
        )
        verified = verify.sync("generated", client=client, body=body)
        assert isinstance(verified, models.Verified) and verified.match is True

        grey = Image.fromarray(np.full((480, 640, 3), 128, np.uint8))
        buf = io.BytesIO()
        grey.save(buf, format="PNG")
        body = models.BodyVerifyV1SubjectsSubjectIdVerifyPost(image=photo(buf.getvalue()))
        refused = verify.sync("generated", client=client, body=body)
        assert isinstance(refused, models.Problem) and refused.code == "no_face"
        body = models.BodyEnrollV1SubjectsSubjectIdEnrollPost(image=photo(b"not an image" * 20))
        refused = enroll.sync("generated", client=client, body=body)
        assert isinstance(refused, models.Problem) and refused.code == "not_an_image"
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "fgclient" or m.startswith("fgclient.")]:
            del sys.modules[name]
        shutil.rmtree(root / "fgclient", ignore_errors=True)
