//! A rule's logsource → an expression over event fields (Windows) or over the event's own
//! logsource (other products), plus the bucket keys used to prefilter rules.

use mamori_sigma::{CategoryAlt, LogSourceSpec, LogsourceMap, MapValue};

/// How a rule selects events.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// Windows: any of these alternatives.
    Windows(Vec<WinAlt>),
    /// Not Windows: compared with the event's logsource as set by its reader.
    Other {
        product: Option<String>,
        /// Event services that satisfy the rule's service; `None` = any; `["*"]` = any.
        services: Option<Vec<String>>,
        category: Option<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct WinAlt {
    /// `None`: any channel.
    pub(crate) channels: Option<Vec<String>>,
    pub(crate) event_id: Option<i64>,
    /// Further equalities (`EventType: CreateKey`).
    pub(crate) extra: Vec<(String, MapValue)>,
    /// Set when the rule names a category or service this mapping does not know: the event's
    /// reader-set logsource must carry it instead.
    pub(crate) unknown: Option<(Option<String>, Option<String>)>,
}

pub(crate) fn selector(ls: &LogSourceSpec, map: &LogsourceMap) -> Selector {
    let product = ls.product.as_deref();
    if product != Some("windows") {
        let services = ls.service.as_ref().map(|s| {
            let implied = product
                .and_then(|p| map.other_services.get(p))
                .and_then(|per| per.get(s));
            let mut v = vec![s.clone()];
            if let Some(imp) = implied {
                v.extend(imp.iter().cloned());
            }
            v
        });
        return Selector::Other {
            product: ls.product.clone(),
            services,
            category: ls.category.clone(),
        };
    }
    let svc_channels = |s: &str| map.windows_services.get(s).cloned();
    let mut alts = Vec::new();
    match (&ls.category, &ls.service) {
        (None, None) => alts.push(WinAlt::default()),
        (None, Some(s)) => match svc_channels(s) {
            Some(ch) => alts.push(WinAlt {
                channels: Some(ch),
                ..WinAlt::default()
            }),
            None => alts.push(WinAlt {
                unknown: Some((None, Some(s.clone()))),
                ..WinAlt::default()
            }),
        },
        (Some(c), svc) => match map.windows_categories.get(c) {
            Some(cat_alts) => {
                for a in cat_alts {
                    if let (Some(want), Some(have)) = (svc, &a.service) {
                        if want != have {
                            continue;
                        }
                    }
                    alts.push(win_alt(a, map));
                }
                if alts.is_empty() {
                    // A service the category does not list: trust the service alone.
                    if let Some(ch) = svc.as_deref().and_then(svc_channels) {
                        alts.push(WinAlt {
                            channels: Some(ch),
                            ..WinAlt::default()
                        });
                    }
                }
            }
            None => alts.push(WinAlt {
                unknown: Some((Some(c.clone()), svc.clone())),
                ..WinAlt::default()
            }),
        },
    }
    Selector::Windows(alts)
}

fn win_alt(a: &CategoryAlt, map: &LogsourceMap) -> WinAlt {
    let mut alt = WinAlt {
        channels: a
            .service
            .as_ref()
            .and_then(|s| map.windows_services.get(s).cloned()),
        ..WinAlt::default()
    };
    for (k, v) in &a.equals {
        match (k.as_str(), v) {
            ("EventID", MapValue::Int(i)) => alt.event_id = Some(*i),
            _ => alt.extra.push((k.clone(), v.clone())),
        }
    }
    alt
}
