//! Browsing the benchmark: per-split overviews (instances per category and attack) and the
//! instance table's query (filters, full-text search, sorting, pages). Pure and shared: the
//! server answers queries with [`Catalog::query`], the browser builds [`InstanceQuery`]s from the
//! URL and back, so every filtered view is a link.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::QueryError;

use crate::safeedit::{Category, SafeEditRecord};

/// Rows per page unless the URL says otherwise.
pub const DEFAULT_PER_PAGE: usize = 25;
/// The most rows one page may ask for.
pub const MAX_PER_PAGE: usize = 200;

/// Sort key of the instance table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// Instance id.
    #[default]
    Id,
    /// Category (paper order), then id.
    Category,
    /// Attack name, then id.
    Attack,
    /// Adversarial prompt length, then id.
    Length,
}

impl SortKey {
    /// Every key.
    pub const ALL: [SortKey; 4] = [
        SortKey::Id,
        SortKey::Category,
        SortKey::Attack,
        SortKey::Length,
    ];

    /// URL value.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Category => "category",
            SortKey::Attack => "attack",
            SortKey::Length => "length",
        }
    }

    /// Parses a URL value.
    pub fn parse(s: &str) -> Option<SortKey> {
        SortKey::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What the instance table shows: every field maps to one URL query parameter. Missing JSON
/// fields take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceQuery {
    /// Split name (`test`, `editing`, `train`, `val`).
    pub split: String,
    /// Category slug ([`Category::slug`]).
    pub category: Option<String>,
    /// Attack name, exact.
    pub attack: Option<String>,
    /// One attack category (records may list several).
    pub attack_category: Option<String>,
    /// Case-insensitive text searched in the question, the prompts and the generations.
    pub q: Option<String>,
    /// Sort key.
    pub sort: SortKey,
    /// Descending order.
    pub desc: bool,
    /// 1-based page.
    pub page: usize,
    /// Rows per page (1..=[`MAX_PER_PAGE`]).
    pub per_page: usize,
}

impl Default for InstanceQuery {
    fn default() -> Self {
        Self {
            split: "test".into(),
            category: None,
            attack: None,
            attack_category: None,
            q: None,
            sort: SortKey::Id,
            desc: false,
            page: 1,
            per_page: DEFAULT_PER_PAGE,
        }
    }
}

impl InstanceQuery {
    /// Reads URL parameters (`get` returns a parameter's value); absent or empty values take
    /// the defaults, malformed numbers and unknown sort keys too (a link never fails to open).
    pub fn from_params(get: impl Fn(&str) -> Option<String>) -> Self {
        let text = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let d = InstanceQuery::default();
        InstanceQuery {
            split: text("split").unwrap_or(d.split),
            category: text("category"),
            attack: text("attack"),
            attack_category: text("attack_category"),
            q: text("q"),
            sort: text("sort")
                .and_then(|s| SortKey::parse(&s))
                .unwrap_or_default(),
            desc: text("desc").is_some_and(|v| v == "1" || v == "true"),
            page: text("page")
                .and_then(|p| p.parse().ok())
                .filter(|&p| p >= 1)
                .unwrap_or(1),
            per_page: text("per_page")
                .and_then(|p| p.parse().ok())
                .map(|p: usize| p.clamp(1, MAX_PER_PAGE))
                .unwrap_or(DEFAULT_PER_PAGE),
        }
    }

    /// The URL query string (without `?`) holding the non-default fields.
    pub fn to_query_string(&self) -> String {
        let d = InstanceQuery::default();
        let mut parts = vec![format!("split={}", encode(&self.split))];
        for (key, value) in [
            ("category", &self.category),
            ("attack", &self.attack),
            ("attack_category", &self.attack_category),
            ("q", &self.q),
        ] {
            if let Some(v) = value {
                parts.push(format!("{key}={}", encode(v)));
            }
        }
        if self.sort != d.sort {
            parts.push(format!("sort={}", self.sort.as_str()));
        }
        if self.desc {
            parts.push("desc=1".into());
        }
        if self.page != 1 {
            parts.push(format!("page={}", self.page));
        }
        if self.per_page != d.per_page {
            parts.push(format!("per_page={}", self.per_page));
        }
        parts.join("&")
    }

    /// The `/instances` link of this query.
    pub fn href(&self) -> String {
        format!("/instances?{}", self.to_query_string())
    }

    /// This query on another page.
    pub fn with_page(&self, page: usize) -> Self {
        Self {
            page,
            ..self.clone()
        }
    }

    /// This query sorted by `key` (toggling the direction when it already is), from page 1.
    pub fn sorted_by(&self, key: SortKey) -> Self {
        Self {
            sort: key,
            desc: self.sort == key && !self.desc,
            page: 1,
            ..self.clone()
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One row of the instance table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Instance id.
    pub id: u64,
    /// Category slug (empty when the string is outside the nine).
    pub category: String,
    /// Category as written in the data.
    pub category_label: String,
    /// Attack name.
    pub attack: String,
    /// Attack categories.
    pub attack_categories: Vec<String>,
    /// The harmful question.
    pub question: String,
    /// Characters in the adversarial prompt.
    pub prompt_chars: usize,
}

/// A count per facet value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetCount {
    /// The value (category slug, attack name, attack category).
    pub value: String,
    /// Display label.
    pub label: String,
    /// Matching instances.
    pub count: usize,
}

/// One page of the instance table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstancePage {
    /// The query answered (page clamped to the last one).
    pub query: InstanceQuery,
    /// The rows of this page.
    pub rows: Vec<InstanceRow>,
    /// Rows matching the filters, over all pages.
    pub total: usize,
    /// Number of pages (at least 1).
    pub pages: usize,
    /// Splits available.
    pub splits: Vec<String>,
    /// Categories in the split, with counts.
    pub categories: Vec<FacetCount>,
    /// Attack names in the split, with counts.
    pub attacks: Vec<FacetCount>,
    /// Attack categories in the split, with counts.
    pub attack_categories: Vec<FacetCount>,
}

/// One split at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOverview {
    /// Split name.
    pub split: String,
    /// Where its records come from (a file path or "shipped sample").
    pub source: String,
    /// Instances.
    pub total: usize,
    /// Instances per category, all nine in paper order (zeros included).
    pub categories: Vec<FacetCount>,
    /// Instances per attack name.
    pub attacks: Vec<FacetCount>,
}

/// A split's records with a lowercase search text per record.
#[derive(Debug, Clone)]
pub struct SplitIndex {
    name: String,
    source: String,
    records: Vec<SafeEditRecord>,
    haystacks: Vec<String>,
}

impl SplitIndex {
    /// Indexes `records` as split `name`.
    pub fn new(name: &str, source: &str, records: Vec<SafeEditRecord>) -> Self {
        let haystacks = records
            .iter()
            .map(|r| {
                let mut text = format!(
                    "{}\n{}\n{}\n{}\n{}",
                    r.question,
                    r.adversarial_prompt,
                    r.safe_generation,
                    r.unsafe_generation,
                    r.attack_name
                );
                if let Some(g) = r.generalization() {
                    for input in g.inputs() {
                        text.push('\n');
                        text.push_str(input);
                    }
                }
                text.to_lowercase()
            })
            .collect();
        Self {
            name: name.into(),
            source: source.into(),
            records,
            haystacks,
        }
    }

    /// The split's records.
    pub fn records(&self) -> &[SafeEditRecord] {
        &self.records
    }
}

/// Every split the server browses.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    splits: Vec<SplitIndex>,
}

impl Catalog {
    /// A catalog of these splits, in display order.
    pub fn new(splits: Vec<SplitIndex>) -> Self {
        Self { splits }
    }

    /// The split names.
    pub fn split_names(&self) -> Vec<String> {
        self.splits.iter().map(|s| s.name.clone()).collect()
    }

    /// A split by name.
    pub fn split(&self, name: &str) -> Option<&SplitIndex> {
        self.splits.iter().find(|s| s.name == name)
    }

    /// One instance by split and id.
    pub fn instance(&self, split: &str, id: u64) -> Option<&SafeEditRecord> {
        self.split(split)?.records.iter().find(|r| r.id == id)
    }

    /// Counts per category and attack for every split.
    pub fn overview(&self) -> Vec<SplitOverview> {
        self.splits
            .iter()
            .map(|s| {
                let all: Vec<usize> = (0..s.records.len()).collect();
                let mut categories = category_counts(&s.records, &all);
                // Show all nine, zeros included, in the paper's order.
                for c in Category::ALL {
                    if !categories.iter().any(|f| f.value == c.slug()) {
                        categories.push(FacetCount {
                            value: c.slug().into(),
                            label: c.display_name().into(),
                            count: 0,
                        });
                    }
                }
                categories.sort_by_key(|f| category_rank(&f.value));
                SplitOverview {
                    split: s.name.clone(),
                    source: s.source.clone(),
                    total: s.records.len(),
                    categories,
                    attacks: attack_counts(&s.records, &all),
                }
            })
            .collect()
    }

    /// Answers an instance-table query. An unknown split is an error naming the known ones.
    pub fn query(&self, query: &InstanceQuery) -> Result<InstancePage, QueryError> {
        let split = self.split(&query.split).ok_or_else(|| {
            QueryError(format!(
                "unknown split `{}` (available: {})",
                query.split,
                self.split_names().join(", ")
            ))
        })?;
        let needle = query.q.as_ref().map(|q| q.to_lowercase());
        let mut hits: Vec<usize> = (0..split.records.len())
            .filter(|&i| {
                let r = &split.records[i];
                query
                    .category
                    .as_ref()
                    .is_none_or(|c| r.category().is_some_and(|rc| rc.slug() == c))
                    && query.attack.as_ref().is_none_or(|a| &r.attack_name == a)
                    && query
                        .attack_category
                        .as_ref()
                        .is_none_or(|a| r.attack_categories().contains(&a.as_str()))
                    && needle
                        .as_ref()
                        .is_none_or(|n| split.haystacks[i].contains(n.as_str()))
            })
            .collect();
        let recs = &split.records;
        hits.sort_by(|&a, &b| {
            let (ra, rb) = (&recs[a], &recs[b]);
            let key = match query.sort {
                SortKey::Id => ra.id.cmp(&rb.id),
                SortKey::Category => category_rank(&slug_of(ra)).cmp(&category_rank(&slug_of(rb))),
                SortKey::Attack => ra.attack_name.cmp(&rb.attack_name),
                SortKey::Length => ra
                    .adversarial_prompt
                    .chars()
                    .count()
                    .cmp(&rb.adversarial_prompt.chars().count()),
            };
            let key = key.then(ra.id.cmp(&rb.id));
            if query.desc { key.reverse() } else { key }
        });
        let per_page = query.per_page.clamp(1, MAX_PER_PAGE);
        let pages = hits.len().div_ceil(per_page).max(1);
        let page = query.page.clamp(1, pages);
        let rows = hits
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|&i| row(&recs[i]))
            .collect();
        let all: Vec<usize> = (0..recs.len()).collect();
        Ok(InstancePage {
            query: InstanceQuery {
                page,
                per_page,
                ..query.clone()
            },
            rows,
            total: hits.len(),
            pages,
            splits: self.split_names(),
            categories: category_counts(recs, &all),
            attacks: attack_counts(recs, &all),
            attack_categories: attack_category_counts(recs),
        })
    }
}

fn slug_of(r: &SafeEditRecord) -> String {
    r.category()
        .map(|c| c.slug().to_string())
        .unwrap_or_default()
}

fn category_rank(slug: &str) -> usize {
    Category::ALL
        .iter()
        .position(|c| c.slug() == slug)
        .unwrap_or(Category::ALL.len())
}

fn row(r: &SafeEditRecord) -> InstanceRow {
    InstanceRow {
        id: r.id,
        category: slug_of(r),
        category_label: r
            .category()
            .map(|c| c.display_name().to_string())
            .unwrap_or_else(|| r.category.clone()),
        attack: r.attack_name.clone(),
        attack_categories: r
            .attack_categories()
            .into_iter()
            .map(str::to_string)
            .collect(),
        question: r.question.clone(),
        prompt_chars: r.adversarial_prompt.chars().count(),
    }
}

fn category_counts(records: &[SafeEditRecord], idx: &[usize]) -> Vec<FacetCount> {
    let mut counts: BTreeMap<usize, (String, String, usize)> = BTreeMap::new();
    for &i in idx {
        let r = &records[i];
        let slug = slug_of(r);
        let label = r
            .category()
            .map(|c| c.display_name().to_string())
            .unwrap_or_else(|| r.category.clone());
        counts
            .entry(category_rank(&slug))
            .or_insert((slug, label, 0))
            .2 += 1;
    }
    counts
        .into_values()
        .map(|(value, label, count)| FacetCount {
            value,
            label,
            count,
        })
        .collect()
}

fn attack_counts(records: &[SafeEditRecord], idx: &[usize]) -> Vec<FacetCount> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in idx {
        *counts.entry(records[i].attack_name.as_str()).or_insert(0) += 1;
    }
    counts
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, count)| FacetCount {
            value: name.into(),
            label: name.into(),
            count,
        })
        .collect()
}

fn attack_category_counts(records: &[SafeEditRecord]) -> Vec<FacetCount> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        for c in r.attack_categories() {
            *counts.entry(c).or_insert(0) += 1;
        }
    }
    counts
        .into_iter()
        .map(|(name, count)| FacetCount {
            value: name.into(),
            label: name.into(),
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::safeedit::parse_records;

    fn catalog() -> Catalog {
        let text = include_str!("../../../data/safeedit/SafeEdit_test_sample.json");
        let records = parse_records(text, Path::new("sample.json")).unwrap();
        Catalog::new(vec![SplitIndex::new("test", "shipped sample", records)])
    }

    #[test]
    fn overview_counts_all_nine_categories() {
        let o = &catalog().overview()[0];
        assert_eq!(o.total, 144);
        assert_eq!(o.categories.len(), 9);
        assert_eq!(o.categories.iter().map(|c| c.count).sum::<usize>(), 144);
        assert_eq!(o.categories[0].value, "offensiveness");
        assert_eq!(o.attacks.iter().map(|c| c.count).sum::<usize>(), 144);
    }

    #[test]
    fn filters_search_sort_and_pages_compose() {
        let c = catalog();
        let all = c.query(&InstanceQuery::default()).unwrap();
        assert_eq!(all.total, 144);
        assert_eq!(all.rows.len(), DEFAULT_PER_PAGE);
        assert_eq!(all.pages, 144usize.div_ceil(DEFAULT_PER_PAGE));

        let bias = InstanceQuery {
            category: Some("bias".into()),
            ..Default::default()
        };
        let page = c.query(&bias).unwrap();
        assert!(page.total > 0 && page.total < 144);
        assert!(page.rows.iter().all(|r| r.category == "bias"));

        let word = c.records_word();
        let search = InstanceQuery {
            q: Some(word.to_uppercase()),
            ..Default::default()
        };
        let found = c.query(&search).unwrap();
        assert!(found.total >= 1, "case-insensitive search finds {word}");

        let by_len = c
            .query(&InstanceQuery::default().sorted_by(SortKey::Length))
            .unwrap();
        let lens: Vec<usize> = by_len.rows.iter().map(|r| r.prompt_chars).collect();
        assert!(lens.windows(2).all(|w| w[0] <= w[1]));
        let desc = InstanceQuery::default()
            .sorted_by(SortKey::Length)
            .sorted_by(SortKey::Length);
        assert!(desc.desc);

        let far = c.query(&InstanceQuery::default().with_page(99)).unwrap();
        assert_eq!(
            far.query.page, far.pages,
            "a page past the end shows the last"
        );
        assert!(
            c.query(&InstanceQuery {
                split: "nope".into(),
                ..Default::default()
            })
            .unwrap_err()
            .to_string()
            .contains("available: test")
        );
    }

    impl Catalog {
        /// A word that occurs in the first record's question.
        fn records_word(&self) -> String {
            self.splits[0].records[0]
                .question
                .split_whitespace()
                .max_by_key(|w| w.len())
                .unwrap()
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        }
    }

    #[test]
    fn queries_round_trip_through_the_url() {
        let q = InstanceQuery {
            split: "test".into(),
            category: Some("illegal".into()),
            attack: Some("money reward".into()),
            attack_category: None,
            q: Some("bomb & co?".into()),
            sort: SortKey::Attack,
            desc: true,
            page: 3,
            per_page: 50,
        };
        let s = q.to_query_string();
        assert_eq!(
            s,
            "split=test&category=illegal&attack=money%20reward&q=bomb%20%26%20co%3F&sort=attack&desc=1&page=3&per_page=50"
        );
        let params: Vec<(String, String)> = s
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), decode(v))
            })
            .collect();
        let back = InstanceQuery::from_params(|k| {
            params
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.clone())
        });
        assert_eq!(back, q);
        let junk = InstanceQuery::from_params(|k| match k {
            "page" => Some("-4".into()),
            "per_page" => Some("100000".into()),
            "sort" => Some("nonsense".into()),
            _ => None,
        });
        assert_eq!(junk.page, 1);
        assert_eq!(junk.per_page, MAX_PER_PAGE);
        assert_eq!(junk.sort, SortKey::Id);
    }

    fn decode(v: &str) -> String {
        let bytes = v.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
