"""Drives a search through a client generated from docs/openapi.json (openapi-python-client):
create it, wait for it, read its trajectory. Nothing here is hand-written HTTP: every call goes
through the generated package, so a contract the generator cannot use fails here.

usage: generated_client.py <package dir> <base url> <API key> <search JSON>
"""

import json
import sys
import time

package_dir, base_url, key, search_json = sys.argv[1:5]
sys.path.insert(0, package_dir)

from sentinela_client import AuthenticatedClient  # noqa: E402
from sentinela_client.api.searches import create_search, get_search, get_trajectory  # noqa: E402
from sentinela_client.models import CreateSearch, Problem, SearchState, SearchView, Trajectory  # noqa: E402

client = AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True)
request = CreateSearch.from_dict(json.loads(search_json))

created = create_search.sync(client=client, body=request, idempotency_key="generated-client-check")
assert isinstance(created, SearchView), created
again = create_search.sync(client=client, body=request, idempotency_key="generated-client-check")
assert isinstance(again, SearchView) and again.id == created.id, (created.id, again)

deadline = time.monotonic() + 300
search = created
while search.status in (SearchState.PENDING, SearchState.PROCESSING):
    assert time.monotonic() < deadline, f"search {created.id} did not end: {search}"
    time.sleep(0.5)
    search = get_search.sync(created.id, client=client)
    assert isinstance(search, SearchView), search
assert search.status == SearchState.COMPLETED, search

trajectory = get_trajectory.sync(created.id, client=client)
assert isinstance(trajectory, Trajectory), trajectory
assert trajectory.points, "no sightings"
assert all(p.label == "bus" and p.color == "red" for p in trajectory.points), trajectory.points
cameras = [v.camera_name for v in trajectory.visits]
assert len(set(cameras)) == 3, cameras

missing = get_search.sync(10**12, client=client)
assert isinstance(missing, Problem) and missing.status == 404 and missing.code == "not_found", missing

print(
    f"generated client OK: search {created.id} {search.status} through "
    f"{len(trajectory.points)} sightings, visits {cameras}"
)
