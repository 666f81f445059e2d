//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. Written by hand (a dozen routes);
//! a test checks that every route of the router is documented and vice versa.
//!
//! **Every error has one body**: `{"error": "<message>"}` with `Content-Type: application/json`
//! (schema `Error`; ingest adds `errors`, the rejected lines). This holds for errors raised by
//! handlers and for those axum raises itself (a query string, path or JSON body that does not
//! parse: 400/415/422; an unknown route: 404; a wrong method: 405). Every operation documents
//! 400, 401, 404, 405, 422 and 500; routes that can refuse a state change also document 409,
//! ingest documents 413, 415 and 503.

use serde_json::{json, Value};

fn q(name: &str, schema: Value, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": desc })
}

fn p(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

/// A database id or store seq (parsed as i64/u64; ids are never negative).
fn id() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX })
}

/// A paging offset or page size.
fn count(max: Option<u64>) -> Value {
    match max {
        Some(m) => json!({ "type": "integer", "minimum": 0, "maximum": m }),
        None => json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX }),
    }
}

/// Deepest search offset (the store pages at most 100,000 hits deep, 10,000 at a time).
pub const SEARCH_MAX_OFFSET: usize = 90_000;

const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// The error responses every operation can give.
fn errors() -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for (code, name) in [
        ("400", "BadRequest"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("405", "MethodNotAllowed"),
        ("409", "Conflict"),
        ("422", "Unprocessable"),
        ("500", "Internal"),
        ("503", "Unavailable"),
    ] {
        m.insert(
            code.into(),
            json!({ "$ref": format!("#/components/responses/{name}") }),
        );
    }
    m
}

fn ok(desc: &str, schema: Value) -> Value {
    let mut m = errors();
    m.insert(
        "200".into(),
        json!({ "description": desc, "content": { "application/json": { "schema": schema } } }),
    );
    Value::Object(m)
}

/// [`ok`] with an object body (for modules that document their own routes).
pub(crate) fn ok_object(desc: &str) -> Value {
    ok(desc, json!({ "type": "object" }))
}

fn err(desc: &str) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The document.
pub fn document() -> Value {
    let mut doc = base_document();
    if let (Some(paths), Value::Object(more)) = (doc["paths"].as_object_mut(), console_paths()) {
        paths.extend(more);
    }
    if let (Some(paths), Value::Object(more)) =
        (doc["paths"].as_object_mut(), crate::agents::openapi_paths())
    {
        paths.extend(more);
    }
    if let (Some(paths), Value::Object(more)) = (
        doc["paths"].as_object_mut(),
        crate::console::openapi_paths(),
    ) {
        paths.extend(more);
    }
    doc
}

/// The console's JSON routes (issue #17): overview, search export, users, evidence.
fn console_paths() -> Value {
    let user = json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._-]+$" });
    let role = json!({ "type": "string", "enum": ["admin", "analyst", "viewer"] });
    json!({
        "/api/v1/console/overview": { "get": { "summary": "The console overview: alerts per level per hour (24 h), open incidents by NIST phase, response actions in force.",
            "responses": ok("Overview", json!({ "type": "object" })) } },
        "/api/v1/search/export": { "get": { "summary": "Search results as CSV (formula-safe cells) or JSON lines, at most 10000 events.",
            "parameters": [ q("q", json!({ "type": "string" }), "query"), q("from", json!({ "type": "string", "format": "date-time" }), "inclusive"),
                q("to", json!({ "type": "string", "format": "date-time" }), "exclusive"), q("format", json!({ "type": "string", "enum": ["csv", "jsonl"] }), "default csv"),
                q("limit", count(Some(10_000)), "") ],
            "responses": with(errors(), json!({ "200": { "description": "The export", "content": { "text/csv": { "schema": { "type": "string" } }, "application/x-ndjson": { "schema": { "type": "string" } } } } })) } },
        "/api/v1/console/searches": {
            "get": { "summary": "The caller's saved searches.", "responses": ok("Saved searches", json!({ "type": "object" })) },
            "post": { "summary": "Save (or replace by name) a search; an empty `q` deletes it.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "required": ["name", "q"],
                    "properties": { "name": { "type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S" }, "q": { "type": "string", "maxLength": 4000 }, "range_hours": { "type": ["integer", "null"], "minimum": 0, "maximum": u32::MAX } } } } } },
                "responses": ok("Saved searches", json!({ "type": "object" })) } },
        "/api/v1/users": {
            "get": { "summary": "Console users (admin only).", "responses": ok("Users", json!({ "type": "object" })) },
            "post": { "summary": "Add a console user (admin only).",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "required": ["name", "role", "password"],
                    "properties": { "name": user, "role": role, "password": { "type": "string", "minLength": 10 } } } } } },
                "responses": ok("The user", json!({ "type": "object" })) } },
        "/api/v1/users/{name}": { "post": { "summary": "Change a user's role, disable/enable, set a password (admin only; not yourself).",
            "parameters": [ p("name", user) ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false,
                "properties": { "role": { "type": ["string", "null"], "enum": ["admin", "analyst", "viewer", null] }, "disabled": { "type": ["boolean", "null"] }, "password": { "type": ["string", "null"], "minLength": 10 } } } } } },
            "responses": ok("What changed", json!({ "type": "object" })) } },
        "/api/v1/incidents/{id}/evidence": { "post": { "summary": "Export the incident's evidence bundle while the server runs (through the vault's sealer); answers its file name, download path and SHA-256.",
            "parameters": [ p("id", id()) ],
            "responses": ok("The bundle", json!({ "type": "object" })) } },
        "/api/v1/evidence/{file}": { "get": { "summary": "Download an exported evidence bundle.",
            "parameters": [ p("file", json!({ "type": "string" })) ],
            "responses": with(errors(), json!({ "200": { "description": "The tar bundle", "content": { "application/x-tar": { "schema": { "type": "string", "format": "binary" } } } } })) } }
    })
}

fn base_document() -> Value {
    let secured = json!([{ "bearer": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Mamori API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Ingest, search, alerts, rules and metrics of a Mamori server. Every route but /api/v1/health needs `Authorization: Bearer <token>` (create one with `mamori token create`)."
        },
        "security": secured,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Unauthorized": err("Missing, invalid or revoked token."),
                "Forbidden": err("Signed in to the console but not allowed: a change without the session's X-CSRF-Token, a viewer changing state, a non-admin managing users."),
                "BadRequest": err("Malformed request; the message says what and where."),
                "NotFound": err("No such route or object."),
                "MethodNotAllowed": err("The route exists but not with this method."),
                "Conflict": err("The change conflicts with the object's state (e.g. a refused phase change)."),
                "Unprocessable": err("A JSON body of the wrong shape (missing or mistyped fields)."),
                "Internal": err("Internal error (the cause is logged by the server, never sent)."),
                "Unavailable": err("The server is shutting down or storage is failing; retry later."),
                "TooLarge": err("Body over the size limit (compressed or decompressed), or more events than `http.max_events_per_request`; nothing was stored."),
                "UnsupportedEncoding": err("A Content-Encoding other than gzip or identity.")
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": {
                    "error": { "type": "string" },
                    "errors": { "type": "array", "description": "ingest: the rejected lines", "items": { "$ref": "#/components/schemas/LineError" } } } },
                "LineError": { "type": "object", "required": ["line", "error"], "properties": { "line": { "type": "integer" }, "error": { "type": "string" } } },
                "Event": { "type": "object", "properties": {
                    "seq": { "type": "integer" }, "received_at": { "type": "string", "format": "date-time" },
                    "time": { "type": "string", "format": "date-time" }, "timestamp_raw": { "type": ["string", "null"] },
                    "format": { "type": "string" }, "source": { "type": "string" }, "host": { "type": ["string", "null"] },
                    "fields": { "type": "object" }, "raw": { "type": "string" } } },
                "Alert": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "rule_id": { "type": "string" }, "title": { "type": "string" },
                    "level": { "type": "string", "enum": ["informational", "low", "medium", "high", "critical"] },
                    "status": { "type": "string", "enum": ["open", "acknowledged"] },
                    "event_time": { "type": ["string", "null"], "format": "date-time" },
                    "received_at": { "type": "string", "format": "date-time" }, "last_seen": { "type": "string", "format": "date-time" },
                    "count": { "type": "integer" }, "event_seqs": { "type": "array", "items": { "type": "integer" } },
                    "group_key": { "type": ["string", "null"] }, "dedup_key": { "type": ["string", "null"] },
                    "details": { "type": "object" }, "ack": { "type": ["object", "null"] } } },
                "SearchRequest": { "type": "object", "additionalProperties": false, "properties": {
                    "query": { "type": "string" }, "from": { "type": ["string", "null"], "format": "date-time" },
                    "to": { "type": ["string", "null"], "format": "date-time" }, "sort": { "type": "string", "enum": ["asc", "desc"] },
                    "offset": { "type": "integer", "minimum": 0, "maximum": SEARCH_MAX_OFFSET }, "limit": { "type": "integer", "minimum": 0, "maximum": 10000 },
                    "histogram": { "type": ["number", "null"], "minimum": 0.001, "exclusiveMaximum": 1e12, "description": "bucket width in seconds" } } },
                "SearchResponse": { "type": "object", "properties": {
                    "total": { "type": "integer" }, "hits": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
                    "histogram": { "type": "array", "items": { "type": "object", "properties": { "start": { "type": "string", "format": "date-time" }, "count": { "type": "integer" } } } } } }
            }
        },
        "paths": {
            "/api/v1/health": { "get": { "summary": "Liveness (no token needed).", "security": [],
                "responses": with(errors(), json!({ "200": { "description": "The server is up; `status` is `ok`, or `degraded` with `reasons` (disk full, search index failing).", "content": { "application/json": { "schema": { "type": "object" } } } } })) } },
            "/api/v1/openapi.json": { "get": { "summary": "This document.", "responses": ok("OpenAPI document", json!({ "type": "object" })) } },
            "/api/v1/ingest": { "post": {
                "summary": "Ingest JSON events (JSON lines or one array; NXLog/Winlogbeat Windows events, CloudTrail records, any flat JSON). Answers 200 only once the events are durable. Lines are independent: a line (or array element) that is not an event is listed in `errors` with its number and the others are stored; 400 only when none is an event or an array is not valid JSON. Size and event-count limits are checked before anything is stored. `Content-Encoding: gzip` bodies are decompressed; any other encoding is refused with 415. With an `Idempotency-Key`, each event gets the field `mamori.ingest_id` (`<caller>/<key>/<n>`); on a cluster collector it is the event's JetStream message id, so the same request repeated at another collector within 10 minutes is stored once. A sender's own `mamori.ingest_id` is dropped.",
                "parameters": [ { "name": "Idempotency-Key", "in": "header", "required": false, "schema": { "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$" }, "description": "the same key for a repeated request (400 when malformed)" } ],
                "requestBody": { "required": false, "content": { "application/x-ndjson": { "schema": { "type": "string" } }, "application/json": { "schema": { "type": ["array", "object"], "items": { "type": "object" } } } } },
                "responses": with(errors(), json!({
                    "200": { "description": "Stored (`first_seq`/`last_seq` present when something was).", "content": { "application/json": { "schema": { "type": "object", "required": ["accepted", "rejected", "errors"], "properties": {
                        "accepted": { "type": "integer" }, "rejected": { "type": "integer" },
                        "errors": { "type": "array", "items": { "$ref": "#/components/schemas/LineError" } },
                        "first_seq": { "type": "integer" }, "last_seq": { "type": "integer" } } } } } },
                    "413": { "$ref": "#/components/responses/TooLarge" },
                    "415": { "$ref": "#/components/responses/UnsupportedEncoding" },
                    "507": { "description": "Not stored: the server's disk is full (retry later).", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } } })) } },
            "/api/v1/upload": { "post": {
                "summary": "Upload a log file (EVTX, JSON, syslog, access log, CloudTrail, auditd; gzip ok). It is kept under the data directory and read with the same readers as `mamori hunt`.",
                "parameters": [ { "name": "name", "in": "query", "required": true, "schema": { "type": "string" }, "description": "original file name (kept, sanitised)" },
                    q("format", json!({ "type": "string", "enum": ["evtx", "json", "cloudtrail", "syslog", "access-log", "iis", "auditd"] }), "force a format") ],
                "requestBody": { "required": false, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": ok("Read report: events stored, errors with line/offset", json!({ "type": "object" })) } },
            "/api/v1/search": {
                "get": { "summary": "Search events with a Lucene-like query. A histogram may have at most 10,000 buckets over the searched range (400 beyond: use a wider bucket or a time range); `from` after `to` is an empty range.",
                    "parameters": [ q("q", json!({ "type": "string" }), "e.g. user.name:alice AND event.outcome:failure"),
                        q("from", json!({ "type": "string", "format": "date-time" }), "inclusive"), q("to", json!({ "type": "string", "format": "date-time" }), "exclusive"),
                        q("sort", json!({ "type": "string", "enum": ["asc", "desc"] }), "by time"), q("offset", count(Some(SEARCH_MAX_OFFSET as u64)), "paging"),
                        q("limit", count(Some(10_000)), "page size (max 10000)"), q("histogram", json!({ "type": "number", "minimum": 0.001, "exclusiveMaximum": 1e10 }), "bucket width in seconds") ],
                    "responses": ok("Matching events", json!({ "$ref": "#/components/schemas/SearchResponse" })) },
                "post": { "summary": "Search with a JSON body.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SearchRequest" } } } },
                    "responses": ok("Matching events", json!({ "$ref": "#/components/schemas/SearchResponse" })) } },
            "/api/v1/events/{seq}": { "get": { "summary": "One stored event.", "parameters": [ p("seq", id()) ],
                "responses": ok("The event", json!({ "$ref": "#/components/schemas/Event" })) } },
            "/api/v1/alerts": { "get": { "summary": "Alerts, newest first.",
                "parameters": [ q("status", json!({ "type": "string", "enum": ["open", "acknowledged"] }), ""), q("min_level", json!({ "type": "string", "enum": LEVELS }), ""),
                    q("since", json!({ "type": "string", "format": "date-time" }), "last seen at or after"), q("rule_id", json!({ "type": "string" }), ""),
                    q("offset", count(None), ""), q("limit", count(Some(1000)), ""),
                    q("assignee", json!({ "type": "string", "maxLength": 64 }), "a console user's alerts; empty: the unassigned ones") ],
                "responses": ok("Alerts", json!({ "type": "object", "properties": { "alerts": { "type": "array", "items": { "$ref": "#/components/schemas/Alert" } } } })) } },
            "/api/v1/alerts/{id}": { "get": { "summary": "One alert.", "parameters": [ p("id", id()) ],
                "responses": ok("The alert", json!({ "$ref": "#/components/schemas/Alert" })) } },
            "/api/v1/alerts/{id}/ack": { "post": { "summary": "Acknowledge an alert (the first acknowledgement wins).", "parameters": [ p("id", id()) ],
                "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "properties": { "note": { "type": "string", "maxLength": 10000 } } } } } },
                "responses": ok("The alert", json!({ "$ref": "#/components/schemas/Alert" })) } },
            "/api/v1/rules": { "get": { "summary": "Loaded rules and the last (re)load report with every rule that failed to compile.",
                "responses": ok("Rules", json!({ "type": "object" })) } },
            "/api/v1/rules/reload": { "post": { "summary": "Reload the rule files now.", "responses": ok("Reload report", json!({ "type": "object" })) } },
            "/api/v1/incidents": { "get": { "summary": "Incidents (alerts grouped by shared entities and ATT&CK progression), newest activity first.",
                "parameters": [ q("status", json!({ "type": "string", "enum": ["open", "closed"] }), ""), q("phase", json!({ "type": "string", "enum": ["detection_analysis", "containment", "eradication", "recovery", "post_incident"] }), ""),
                    q("min_severity", json!({ "type": "string", "enum": LEVELS }), ""),
                    q("kind", json!({ "type": "string", "enum": ["generic", "brute_force", "web_attack", "account_compromise", "vpn_compromise", "data_exfiltration", "ransomware"] }), ""),
                    q("limit", count(None), "page size (larger values are capped at 1000)"), q("offset", count(None), "") ],
                "responses": ok("Incidents", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}": { "get": { "summary": "One incident: alerts with why they joined, tasks, history, notes, actions, evidence.", "parameters": [ p("id", id()) ],
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/report": { "get": { "summary": "The incident report (NIST SP 800-61 phases, evidence, indicators) as a PDF or a self-contained HTML file.", "parameters": [ p("id", id()),
                    q("lang", json!({ "type": "string", "enum": ["en", "ja"], "default": "en" }), ""),
                    q("format", json!({ "type": "string", "enum": ["pdf", "html"], "default": "pdf" }), ""),
                    q("tz", json!({ "type": "string", "pattern": "^(UTC|utc|Z|Etc/UTC|JST|jst|Asia/Tokyo|[+-](0?[0-9]|1[0-4])(:[0-5][0-9])?)$" }), "UTC, JST, Asia/Tokyo or an offset like +09:00 (default: JST for ja, UTC for en)") ],
                "responses": with(errors(), json!({ "200": { "description": "The report", "content": { "application/pdf": { "schema": { "type": "string", "format": "binary" } }, "text/html": { "schema": { "type": "string" } } } } })) } },
            "/api/v1/incidents/{id}/phase": { "post": { "summary": "Move to a NIST SP 800-61 phase (going back needs `why`).", "parameters": [ p("id", id()) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "required": ["phase"], "properties": { "phase": { "type": "string", "enum": ["detection-analysis", "containment", "eradication", "recovery", "post-incident"] }, "why": { "type": ["string", "null"] } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/assign": { "post": { "summary": "Assign (or unassign with null).", "parameters": [ p("id", id()) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "properties": { "assignee": { "type": ["string", "null"] } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/notes": { "post": { "summary": "Add a note.", "parameters": [ p("id", id()) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "required": ["text"], "properties": { "text": { "type": "string" } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/tasks/{task}/done": { "post": { "summary": "Check off a playbook task.", "parameters": [ p("id", id()), p("task", json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX })) ],
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/close": { "post": { "summary": "Close with lessons learned (post-incident activity).", "parameters": [ p("id", id()) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "required": ["lessons"], "properties": { "lessons": { "type": "string" } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/responses": { "get": { "summary": "Pending suggested response actions and the record of executed ones.", "responses": ok("Responses", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/responses/{plan}/approve": { "post": { "summary": "Approve a suggested action (recorded on the incident).", "parameters": [ p("id", id()), p("plan", id()) ],
                "responses": ok("The action record", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/responses/{record}/rollback": { "post": { "summary": "Roll back an action (unblock, re-enable, de-isolate); `dry_run` shows the commands.", "parameters": [ p("id", id()), p("record", id()) ],
                "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "properties": { "dry_run": { "type": "boolean" } } } } } },
                "responses": ok("The action record", json!({ "type": "object" })) } },
            "/api/v1/backups": { "get": { "summary": "Backup checks: every `[[backup]]` entry with its latest result and history (newest first), and the 3-2-1 judgement of each protected system. Findings carry a stable `code` and `en`/`ja` sentences.",
                "parameters": [ q("history", count(Some(1000)), "Results per entry, newest first (default 30).") ],
                "responses": ok("Backups", json!({ "type": "object", "required": ["backups", "systems"], "properties": {
                    "backups": { "type": "array", "items": { "type": "object" } }, "systems": { "type": "array", "items": { "type": "object" } } } })) } },
            "/api/v1/backups/{name}/check": { "post": { "summary": "Check a backup now. 202 when started; with `wait=true`, 200 and the stored result. 409 while its check runs.",
                "parameters": [ p("name", json!({ "type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$" })), q("wait", json!({ "type": "boolean" }), "Wait for the result.") ],
                "responses": with(errors(), json!({
                    "200": { "description": "The result", "content": { "application/json": { "schema": { "type": "object" } } } },
                    "202": { "description": "Started", "content": { "application/json": { "schema": { "type": "object" } } } } })) } },
            "/api/v1/scans": { "get": { "summary": "Scans of the `[scan]` targets (allow-listed, on schedule): the configuration, the last runs newest first (the newest with its full report: findings with `en`/`ja` explanations and fixes) and every finding with when it was first and last seen and the alert it raised.",
                "parameters": [ q("limit", count(Some(100)), "Runs to list, newest first (default 10).") ],
                "responses": ok("Scans", json!({ "type": "object", "required": ["enabled", "targets", "profile", "every", "running", "scans", "findings"], "properties": {
                    "enabled": { "type": "boolean" }, "targets": { "type": "array", "items": { "type": "string" } },
                    "profile": { "type": "string", "enum": ["safe", "standard"] }, "every": { "type": "string" }, "running": { "type": "boolean" },
                    "scans": { "type": "array", "items": { "type": "object", "required": ["id", "started", "duration_ms", "profile", "worst", "findings"] } },
                    "findings": { "type": "array", "items": { "type": "object", "required": ["check", "target", "location", "severity", "first_seen", "last_seen"] } } } })) } },
            "/api/v1/preparation": { "get": { "summary": "The Preparation checklist (contacts, escalation, backups, MFA…), ja/en.", "responses": ok("Checklist", json!({ "type": "object" })) } },
            "/api/v1/sources": { "get": { "summary": "Log source health: every source with last-seen time, events in the last hour, 48 hourly counts (oldest first) and its state (a silent or collapsed source is also an alert).",
                "responses": ok("Sources", json!({ "type": "object", "required": ["sources", "generated_at"], "properties": {
                    "generated_at": { "type": "string", "format": "date-time" },
                    "sources": { "type": "array", "items": { "type": "object", "required": ["source", "kind", "last_seen", "events_last_hour", "hourly", "state", "since"], "properties": {
                        "source": { "type": "string" }, "kind": { "type": "string", "enum": ["syslog", "http", "upload", "tail"] },
                        "last_seen": { "type": ["string", "null"], "format": "date-time" }, "events_last_hour": { "type": "integer", "minimum": 0 },
                        "hourly": { "type": "array", "minItems": 48, "maxItems": 48, "items": { "type": "integer", "minimum": 0 } },
                        "state": { "type": "string", "enum": ["ok", "new", "silent", "collapsed"] },
                        "since": { "type": ["string", "null"], "format": "date-time" } } } } } })) } },
            "/metrics": { "get": { "summary": "Prometheus metrics (text format).",
                "responses": with(errors(), json!({ "200": { "description": "Metrics", "content": { "text/plain": { "schema": { "type": "string" } } } } })) } }
        }
    })
}

/// `base` with the responses of `more` added.
fn with(mut base: serde_json::Map<String, Value>, more: Value) -> Value {
    if let Value::Object(m) = more {
        base.extend(m);
    }
    Value::Object(base)
}

/// The documented (path, method) pairs.
pub fn documented_routes() -> Vec<(String, String)> {
    let doc = document();
    let mut out = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            if let Some(ops) = ops.as_object() {
                for m in ops.keys() {
                    out.push((path.clone(), m.to_uppercase()));
                }
            }
        }
    }
    out.sort();
    out
}
