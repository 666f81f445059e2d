//! The identity directory: a small CSV (or JSON array) inventory of people, accounts and keys.
//!
//! ```text
//! kind,id,person,status,end_date,created
//! account,kobayashi,小林 (委託),contractor_ended,2026-09-25,
//! key,AKIAVENDOR7QX2EXAMPL,vendor-acme,departed,2024-03-31,2022-01-10
//! ```
//!
//! `status` is `active`, `departed`, `contractor_ended` or `disabled`; any activity by a
//! non-active identity after its `end_date` (or at all, without one) is an alert. `created`
//! dates access keys for the key-age policy.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Deserialize;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Departed,
    ContractorEnded,
    Disabled,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "active" | "contractor" | "" => Status::Active,
            "departed" | "left" | "former" => Status::Departed,
            "contractor_ended" | "contract_ended" => Status::ContractorEnded,
            "disabled" | "revoked" => Status::Disabled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Departed => "departed",
            Status::ContractorEnded => "contractor_ended",
            Status::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Identity {
    /// `account` or `key`.
    pub kind: String,
    pub id: String,
    pub person: String,
    pub status: Status,
    pub end_date: Option<NaiveDate>,
    pub created: Option<NaiveDate>,
}

#[derive(Debug, Deserialize)]
struct RawIdentity {
    kind: String,
    id: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

/// Identities by account name (case-insensitive) or key id.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    by_id: HashMap<String, Identity>,
}

impl Directory {
    /// Parses CSV (with the header above) or a JSON array of objects with the same names.
    pub fn parse(text: &str, path: &str) -> Result<Directory> {
        let err = |message: String| Error::Load {
            path: path.to_owned(),
            message,
        };
        let raws: Vec<RawIdentity> = if text.trim_start().starts_with('[') {
            serde_json::from_str(text).map_err(|e| err(e.to_string()))?
        } else {
            let mut r = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            r.deserialize()
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        };
        let date = |s: &Option<String>, what: &str, id: &str| -> Result<Option<NaiveDate>> {
            match s.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|e| err(format!("{id}: bad {what} `{d}`: {e}"))),
            }
        };
        let mut by_id = HashMap::new();
        for r in raws {
            let status = Status::parse(&r.status)
                .ok_or_else(|| err(format!("{}: unknown status `{}`", r.id, r.status)))?;
            let id = Identity {
                end_date: date(&r.end_date, "end_date", &r.id)?,
                created: date(&r.created, "created", &r.id)?,
                kind: r.kind.trim().to_ascii_lowercase(),
                id: r.id.trim().to_owned(),
                person: r.person,
                status,
            };
            by_id.insert(id.id.to_ascii_lowercase(), id);
        }
        Ok(Directory { by_id })
    }

    pub fn get(&self, actor: &str) -> Option<&Identity> {
        self.by_id.get(&actor.to_ascii_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
