//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. Written by hand (a dozen routes);
//! a test checks that every route of the router is documented and vice versa.

use serde_json::{json, Value};

fn q(name: &str, schema: Value, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": desc })
}

fn p(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

fn ok(desc: &str, schema: Value) -> Value {
    json!({
        "200": { "description": desc, "content": { "application/json": { "schema": schema } } },
        "401": { "$ref": "#/components/responses/Unauthorized" },
        "400": { "$ref": "#/components/responses/BadRequest" }
    })
}

/// The document.
pub fn document() -> Value {
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
                "Unauthorized": { "description": "Missing or invalid token.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "BadRequest": { "description": "Malformed request; the message says what and where.", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "TooLarge": { "description": "Body over the size limit (compressed or decompressed).", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
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
                    "offset": { "type": "integer", "minimum": 0 }, "limit": { "type": "integer", "minimum": 0, "maximum": 10000 },
                    "histogram": { "type": ["number", "null"], "description": "bucket width in seconds" } } },
                "SearchResponse": { "type": "object", "properties": {
                    "total": { "type": "integer" }, "hits": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
                    "histogram": { "type": "array", "items": { "type": "object", "properties": { "start": { "type": "string", "format": "date-time" }, "count": { "type": "integer" } } } } } }
            }
        },
        "paths": {
            "/api/v1/health": { "get": { "summary": "Liveness (no token needed).", "security": [],
                "responses": { "200": { "description": "The server is up; `status` is `ok`, or `degraded` with `reasons` (disk full, search index failing).", "content": { "application/json": { "schema": { "type": "object" } } } } } } },
            "/api/v1/openapi.json": { "get": { "summary": "This document.", "responses": ok("OpenAPI document", json!({ "type": "object" })) } },
            "/api/v1/ingest": { "post": {
                "summary": "Ingest JSON events (JSON lines or one array; NXLog/Winlogbeat Windows events, CloudTrail records, any flat JSON). Answers 200 only once the batch is durable; all or nothing.",
                "parameters": [ { "name": "Content-Encoding", "in": "header", "required": false, "schema": { "type": "string", "enum": ["gzip"] } } ],
                "requestBody": { "required": true, "content": { "application/x-ndjson": { "schema": { "type": "string" } }, "application/json": { "schema": { "type": "array", "items": { "type": "object" } } } } },
                "responses": {
                    "200": { "description": "Stored.", "content": { "application/json": { "schema": { "type": "object", "properties": { "accepted": { "type": "integer" }, "first_seq": { "type": "integer" }, "last_seq": { "type": "integer" } } } } } },
                    "400": { "$ref": "#/components/responses/BadRequest" }, "401": { "$ref": "#/components/responses/Unauthorized" },
                    "413": { "$ref": "#/components/responses/TooLarge" },
                    "503": { "description": "Not stored: the pipeline is shutting down or the store failed.", "content": { "application/json": { "schema": { "type": "object", "properties": { "error": { "type": "string" } } } } } },
                    "507": { "description": "Not stored: the server's disk is full (retry later).", "content": { "application/json": { "schema": { "type": "object", "properties": { "error": { "type": "string" } } } } } } } } },
            "/api/v1/upload": { "post": {
                "summary": "Upload a log file (EVTX, JSON, syslog, access log, CloudTrail, auditd; gzip ok). It is kept under the data directory and read with the same readers as `mamori hunt`.",
                "parameters": [ q("name", json!({ "type": "string" }), "original file name"), q("format", json!({ "type": "string" }), "force a format") ],
                "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                "responses": ok("Read report: events stored, errors with line/offset", json!({ "type": "object" })) } },
            "/api/v1/search": {
                "get": { "summary": "Search events with a Lucene-like query.",
                    "parameters": [ q("q", json!({ "type": "string" }), "e.g. user.name:alice AND event.outcome:failure"),
                        q("from", json!({ "type": "string", "format": "date-time" }), "inclusive"), q("to", json!({ "type": "string", "format": "date-time" }), "exclusive"),
                        q("sort", json!({ "type": "string", "enum": ["asc", "desc"] }), "by time"), q("offset", json!({ "type": "integer" }), "paging"),
                        q("limit", json!({ "type": "integer" }), "page size (max 10000)"), q("histogram", json!({ "type": "number" }), "bucket width in seconds") ],
                    "responses": ok("Matching events", json!({ "$ref": "#/components/schemas/SearchResponse" })) },
                "post": { "summary": "Search with a JSON body.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SearchRequest" } } } },
                    "responses": ok("Matching events", json!({ "$ref": "#/components/schemas/SearchResponse" })) } },
            "/api/v1/events/{seq}": { "get": { "summary": "One stored event.", "parameters": [ p("seq", json!({ "type": "integer" })) ],
                "responses": ok("The event", json!({ "$ref": "#/components/schemas/Event" })) } },
            "/api/v1/alerts": { "get": { "summary": "Alerts, newest first.",
                "parameters": [ q("status", json!({ "type": "string", "enum": ["open", "acknowledged"] }), ""), q("min_level", json!({ "type": "string" }), ""),
                    q("since", json!({ "type": "string", "format": "date-time" }), "last seen at or after"), q("rule_id", json!({ "type": "string" }), ""),
                    q("offset", json!({ "type": "integer" }), ""), q("limit", json!({ "type": "integer", "maximum": 1000 }), "") ],
                "responses": ok("Alerts", json!({ "type": "object", "properties": { "alerts": { "type": "array", "items": { "$ref": "#/components/schemas/Alert" } } } })) } },
            "/api/v1/alerts/{id}": { "get": { "summary": "One alert.", "parameters": [ p("id", json!({ "type": "integer" })) ],
                "responses": ok("The alert", json!({ "$ref": "#/components/schemas/Alert" })) } },
            "/api/v1/alerts/{id}/ack": { "post": { "summary": "Acknowledge an alert (the first acknowledgement wins).", "parameters": [ p("id", json!({ "type": "integer" })) ],
                "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "note": { "type": "string" } } } } } },
                "responses": ok("The alert", json!({ "$ref": "#/components/schemas/Alert" })) } },
            "/api/v1/rules": { "get": { "summary": "Loaded rules and the last (re)load report with every rule that failed to compile.",
                "responses": ok("Rules", json!({ "type": "object" })) } },
            "/api/v1/rules/reload": { "post": { "summary": "Reload the rule files now.", "responses": ok("Reload report", json!({ "type": "object" })) } },
            "/api/v1/incidents": { "get": { "summary": "Incidents (alerts grouped by shared entities and ATT&CK progression), newest activity first.",
                "parameters": [ q("status", json!({ "type": "string", "enum": ["open", "closed"] }), ""), q("phase", json!({ "type": "string" }), "detection-analysis, containment, eradication, recovery, post-incident"),
                    q("min_severity", json!({ "type": "string" }), ""), q("kind", json!({ "type": "string" }), ""), q("limit", json!({ "type": "integer", "maximum": 1000 }), ""), q("offset", json!({ "type": "integer" }), "") ],
                "responses": ok("Incidents", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}": { "get": { "summary": "One incident: alerts with why they joined, tasks, history, notes, actions, evidence.", "parameters": [ p("id", json!({ "type": "integer" })) ],
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/phase": { "post": { "summary": "Move to a NIST SP 800-61 phase (going back needs `why`).", "parameters": [ p("id", json!({ "type": "integer" })) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["phase"], "properties": { "phase": { "type": "string" }, "why": { "type": "string" } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/assign": { "post": { "summary": "Assign (or unassign with null).", "parameters": [ p("id", json!({ "type": "integer" })) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "properties": { "assignee": { "type": ["string", "null"] } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/notes": { "post": { "summary": "Add a note.", "parameters": [ p("id", json!({ "type": "integer" })) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["text"], "properties": { "text": { "type": "string" } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/tasks/{task}/done": { "post": { "summary": "Check off a playbook task.", "parameters": [ p("id", json!({ "type": "integer" })), p("task", json!({ "type": "integer" })) ],
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/close": { "post": { "summary": "Close with lessons learned (post-incident activity).", "parameters": [ p("id", json!({ "type": "integer" })) ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["lessons"], "properties": { "lessons": { "type": "string" } } } } } },
                "responses": ok("The incident", json!({ "type": "object" })) } },
            "/api/v1/responses": { "get": { "summary": "Pending suggested response actions and the record of executed ones.", "responses": ok("Responses", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/responses/{plan}/approve": { "post": { "summary": "Approve a suggested action (recorded on the incident).", "parameters": [ p("id", json!({ "type": "integer" })), p("plan", json!({ "type": "integer" })) ],
                "responses": ok("The action record", json!({ "type": "object" })) } },
            "/api/v1/incidents/{id}/responses/{record}/rollback": { "post": { "summary": "Roll back an action (unblock, re-enable, de-isolate); `dry_run` shows the commands.", "parameters": [ p("id", json!({ "type": "integer" })), p("record", json!({ "type": "integer" })) ],
                "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "dry_run": { "type": "boolean" } } } } } },
                "responses": ok("The action record", json!({ "type": "object" })) } },
            "/api/v1/preparation": { "get": { "summary": "The Preparation checklist (contacts, escalation, backups, MFA…), ja/en.", "responses": ok("Checklist", json!({ "type": "object" })) } },
            "/metrics": { "get": { "summary": "Prometheus metrics (text format).",
                "responses": { "200": { "description": "Metrics", "content": { "text/plain": { "schema": { "type": "string" } } } }, "401": { "$ref": "#/components/responses/Unauthorized" } } } }
        }
    })
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
