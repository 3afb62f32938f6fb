"""The files ``spark-integrations connectors new NAME`` writes (``string.Template`` text).

The scaffold is a working connector for a simple REST API (bearer token, one create and one
get action, one cursor-paginated incremental stream) whose recordings pass the contract suite
as written; a newcomer edits each file towards the real provider.
"""

from __future__ import annotations

from string import Template

__all__ = ["DOCS", "MANIFEST", "RECORDINGS", "TEST"]

MANIFEST = Template(
    """\
# The ${name} connector, declared as data: docs/writing-a-connector.md explains each key, and
# `spark-integrations connectors check ${name}.yaml` validates this file.
name: ${name}
title: ${title}
docs: docs/${name}.md
# Where requests go; a connection's config base_url overrides it (self-hosted, regional).
base_url: https://api.example.com/v1
# The secrets a connection holds (never shown, never logged).
secret_keys: [api_key]
auth:
  kinds: [bearer]
  bearer: {secret: api_key, scheme: Bearer}      # Authorization: Bearer <api_key>
limits:
  rate_limit: 5                                   # requests per second per connection
  window: 60                                      # the seconds X-RateLimit-Limit counts over
actions:
  - name: create_item
    method: POST
    path: /items
    params: {name: string}                        # required params and their JSON types
    optional: {note: string}
  - name: get_item
    method: GET
    path: /items/{id}                             # a placeholder takes a required param
    params: {id: string}
streams:
  - name: items
    path: /items
    primary_key: id
    replication_key: updated_at                   # grows whenever a record changes
    since_param: updated_since                    # the provider's filter on it (inclusive)
    order: oldest_first                           # or newest_first, delta
    records: data                                 # where the records are in a page
    page_size: 100
    pagination: {style: cursor, cursor_param: cursor, next_field: next_cursor, limit_param: limit}
"""
)

RECORDINGS = Template(
    """\
# What the ${name} provider answers, as its documentation shows it: the contract suite
# (spark_integrations.testing) replays these answers and checks each request the connector sends.
config: {base_url: https://api.example.com/v1}
secrets: {api_key: test-${name}-key}

auth:                               # one entry per auth kind the manifest declares
  - kind: bearer
    secrets: {api_key: test-${name}-auth-key}
    expect: {headers: {Authorization: Bearer test-${name}-auth-key}}

actions:                            # at least one entry per action
  - action: create_item
    params: {name: first}
    request: {method: POST, path: /items, query: {}, json: {name: first}}
    response:
      status: 201
      body: {id: it_1, name: first, updated_at: "2026-01-01T00:00:00Z"}
    result: {id: it_1, name: first, updated_at: "2026-01-01T00:00:00Z"}
  - action: get_item
    params: {id: it_1}
    request: {method: GET, path: /items/it_1, query: {}}
    response:
      status: 200
      body: {id: it_1, name: first, updated_at: "2026-01-01T00:00:00Z"}

streams:                            # each stream read to its end, page by page
  - stream: items
    since: "2026-01-01T00:00:00Z"
    records: 3
    pages:
      - request:
          method: GET
          path: /items
          query: {updated_since: "2026-01-01T00:00:00Z", limit: "100"}
        response:
          status: 200
          body:
            data:
              - {id: it_1, name: first, updated_at: "2026-01-01T00:00:00Z"}
              - {id: it_2, name: second, updated_at: "2026-01-02T00:00:00Z"}
            next_cursor: c2
      - request: {query: {updated_since: "2026-01-01T00:00:00Z", cursor: c2, limit: "100"}}
        response:
          status: 200
          body:
            data:
              - {id: it_3, name: third, updated_at: "2026-01-03T00:00:00Z"}
            next_cursor: null

errors:                             # each documented error, and what the fleet must do
  - name: rate limited
    target: {action: create_item, params: {name: x}}
    response: {status: 429, headers: {Retry-After: "30"}, body: {error: rate_limited}}
    expect: rate_limited
    wait: 30
  - name: bad token
    target: {action: get_item, params: {id: it_1}}
    response: {status: 401, body: {error: invalid_token}}
    expect: reauth
  - name: invalid request
    target: {action: create_item, params: {name: x}}
    response: {status: 422, body: {error: invalid_name}}
    expect: fatal
  - name: unavailable
    target: {stream: items}
    response: {status: 503, headers: {Retry-After: "5"}, body: {error: unavailable}}
    expect: retry
    wait: 5
  - name: server error
    target: {action: create_item, params: {name: x}}
    response: {status: 500, body: {error: internal}}
    expect: unknown                 # may have been applied: never resent blindly

rate_limit:                         # the provider's rate-limit headers feed the budget
  - name: limit headers
    target: {action: get_item, params: {id: it_1}}
    response:
      status: 200
      headers: {X-RateLimit-Limit: "300", X-RateLimit-Remaining: "299"}
      body: {id: it_1, name: first, updated_at: "2026-01-01T00:00:00Z"}
    expect: {limit: 300, remaining: 299, rate: 5}   # the budget learns 300 per 60 s
  - name: window spent
    target: {action: get_item, params: {id: it_1}}
    response:
      status: 200
      headers: {X-RateLimit-Limit: "300", X-RateLimit-Remaining: "0", X-RateLimit-Reset: "20"}
      body: {id: it_1, name: first, updated_at: "2026-01-01T00:00:00Z"}
    expect: {remaining: 0, reset_in: 20, pause: 20}   # the budget waits for the reset
"""
)

TEST = Template(
    '''\
"""The ${name} connector passes the contract suite on its recorded answers."""

from __future__ import annotations

from pathlib import Path

from spark_integrations.connectors.manifest import load_manifest
from spark_integrations.testing import ConnectorContract, recordings

HERE = Path(__file__).resolve().parent


class Test${cls}Contract(ConnectorContract):
    connector = load_manifest(HERE / "${name}.yaml")
    recordings = recordings(HERE / "recordings" / "${name}.yaml")
'''
)

DOCS = Template(
    """\
# ${title}

What the `${name}` connector covers, and how to connect it.

## At the provider

What to create (an API key, an app), and the permissions or scopes it needs.

## Auth kinds

- `bearer`: secret `api_key`, sent as `Authorization: Bearer <api_key>`.

## Config keys

- `base_url` (default `https://api.example.com/v1`): for self-hosted or regional endpoints.

## Actions

| Action | Request | Params |
|---|---|---|
| `create_item` | `POST /items` | `name` (string); optional `note` |
| `get_item` | `GET /items/{id}` | `id` (string) |

## Streams

| Stream | Request | Order | Replication |
|---|---|---|---|
| `items` | `GET /items`, cursor pagination | oldest first | `updated_at` (`updated_since`) |

## Limits

5 requests per second per connection, or what `X-RateLimit-Limit` allows per 60 seconds; when
`X-RateLimit-Remaining` reaches 0 the connection waits for `X-RateLimit-Reset`; 429 answers wait
`Retry-After`.

## Webhooks

None declared.

## Known quirks

## Not covered yet
"""
)
