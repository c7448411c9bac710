//! Deterministic synthetic datasets (data contract v1, all 10 tables as CSV) for a Wuhan-like year
//! of sinking party members, with a realistic share of every violation the five directives check.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;

use chrono::{Datelike, NaiveDate, Weekday};
use rayon::prelude::*;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Number of members (at least 1); every other table scales with it.
    pub members: usize,
    /// Same seed and options give byte-identical files.
    pub seed: u64,
    /// Output folder, created if missing; holds one `NAME.csv` per table.
    pub out: std::path::PathBuf,
    /// Calendar year of all dates; the latest date in the data is its 31 December.
    pub year: i32, /* default 2020 */
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            members: 10_000,
            seed: 1,
            out: PathBuf::from("synthetic"),
            year: 2020,
        }
    }
}

/// Why a dataset cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No members were asked for.
    #[error("members must be at least 1")]
    NoMembers,
    /// The year is not one of four digits.
    #[error("year {year} is outside 1000..=9999")]
    YearOutOfRange {
        /// The year asked for.
        year: i32,
    },
    /// The year has no 1 January (never for a year in range).
    #[error("invalid year")]
    InvalidYear {
        /// The year asked for.
        year: i32,
    },
    /// A calendar day the data uses does not exist in the year (never for a year in range).
    #[error("invalid date {year}-{month}-{day}")]
    InvalidDate {
        /// The year.
        year: i32,
        /// The month.
        month: u32,
        /// The day.
        day: u32,
    },
    /// The output folder or a table's file cannot be created.
    #[error("cannot create {}", .path.display())]
    Create {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A table's file cannot be written (the message is the I/O error's).
    #[error("{error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The thread writing the member tables panicked.
    #[error("writer thread panicked")]
    WriterPanicked,
}

/// What was written: one entry per table in contract order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenReport {
    /// Table name, rows written and bytes written.
    pub tables: Vec<(String /*table*/, u64 /*rows*/, u64 /*bytes*/)>,
}

/// Table names in contract order; files are `NAME.csv`.
pub const TABLES: [&str; 10] = [
    "communities",
    "organizations",
    "members",
    "reports",
    "filings",
    "assignments",
    "services",
    "checkins",
    "unit_attendance",
    "org_registrations",
];

/// Header line of each table, same order as [`TABLES`].
pub const HEADERS: [&str; 10] = [
    "community_id,name,district",
    "org_id,name,kind,community_id",
    "member_id,name,branch_id,residence_community_id,employment",
    "member_id,community_id,reported_on,campaign",
    "member_id,branch_id,filed_on",
    "member_id,community_id,grid_id,team,assigned_on",
    "service_id,member_id,community_id,start,end,category,tasked_by,verified",
    "member_id,community_id,at",
    "member_id,date",
    "org_id,community_id,registered_on",
];

/// Members per chunk; every chunk has its own RNG stream, so output never depends on threads.
const CHUNK: usize = 2048;
/// Per-member tables (members ..= unit_attendance) are produced by the chunks.
const FIRST_MEMBER_TABLE: usize = 2;
const MEMBER_TABLES: usize = 7;

const T_MEMBERS: usize = 0;
const T_REPORTS: usize = 1;
const T_FILINGS: usize = 2;
const T_ASSIGN: usize = 3;
const T_SERVICES: usize = 4;
const T_CHECKINS: usize = 5;
const T_ATTEND: usize = 6;

// Shares (probabilities) of behaviours and violations.
const P_NO_EPIDEMIC: f64 = 0.12;
const P_OTHER_ONLY: f64 = 0.07;
const P_UNASSIGNED: f64 = 0.08;
const P_REASSIGNED: f64 = 0.15;
const P_DETACH_FAIL: f64 = 0.09;
const P_NOMINAL: f64 = 0.05;
const P_ROLLCALL: f64 = 0.08;
const P_DISOBEY: f64 = 0.10;
const P_DUAL: f64 = 0.87;
const P_NO_FILING: f64 = 0.06;
const P_FILING_OTHER: f64 = 0.04;
const P_FILING_EARLY: f64 = 0.04;
const P_WORK_HOURS: f64 = 0.08;
const P_LOW_HOURS: f64 = 0.10;
const P_VERIFIED: f64 = 0.95;
const P_CHECKIN: f64 = 0.90;
const P_BAD_WORKTEAM: f64 = 0.08;
const P_UNREGISTERED: f64 = 0.10;

const DISTRICTS: [(&str, u32); 13] = [
    ("江岸区", 12),
    ("江汉区", 10),
    ("硚口区", 10),
    ("汉阳区", 9),
    ("武昌区", 13),
    ("青山区", 8),
    ("洪山区", 12),
    ("东西湖区", 6),
    ("汉南区", 2),
    ("蔡甸区", 4),
    ("江夏区", 5),
    ("黄陂区", 5),
    ("新洲区", 4),
];

/// Place names of Wuhan neighbourhoods, space separated.
const PLACE_WORDS: &str = "百步亭 花桥 永清 球场 塔子湖 后湖 三眼桥 台北 汉兴 \
    唐家墩 万松 常青 宝丰 古田 汉正 易家墩 琴断口 五里墩 \
    鹦鹉 晴川 首义 中南 紫阳 积玉桥 水果湖 徐家棚 白沙洲 \
    杨园 红钢城 工人村 钢花 关山 卓刀泉 珞南 狮子山 青菱 \
    将军路 吴家山 径河 纱帽 奓山 纸坊 庙山 前川 盘龙 阳逻 \
    邾城 南湖";

const PLACE_SUFFIX: [&str; 24] = [
    "", "花园", "新村", "东", "西", "南", "北", "路", "街", "里", "苑", "家园", "一", "二", "三",
    "四", "中", "新", "嘉园", "桥", "湾", "港", "园", "城",
];

const DEPTS: [&str; 40] = [
    "湖北省委组织部",
    "湖北省委宣传部",
    "湖北省直机关工委",
    "湖北省发展改革委",
    "湖北省教育厅",
    "湖北省科技厅",
    "湖北省经信厅",
    "湖北省公安厅",
    "湖北省民政厅",
    "湖北省司法厅",
    "湖北省财政厅",
    "湖北省人社厅",
    "湖北省自然资源厅",
    "湖北省生态环境厅",
    "湖北省住建厅",
    "湖北省交通运输厅",
    "湖北省水利厅",
    "湖北省农业农村厅",
    "湖北省商务厅",
    "湖北省文旅厅",
    "湖北省卫生健康委",
    "湖北省退役军人厅",
    "湖北省应急管理厅",
    "湖北省审计厅",
    "湖北省市场监管局",
    "湖北省统计局",
    "湖北省医保局",
    "湖北省妇联",
    "湖北省总工会",
    "共青团湖北省委",
    "武汉市委组织部",
    "武汉市民政局",
    "武汉市城管委",
    "武汉市卫健委",
    "武汉市税务局",
    "武汉市财政局",
    "武汉市教育局",
    "武汉市交通运输局",
    "武汉市水务局",
    "武汉市园林局",
];

/// The 100 most common surnames, most frequent first, space separated.
const SURNAME_CHARS: &str = "王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 高 林 罗 \
    郑 梁 谢 宋 唐 许 韩 冯 邓 曹 彭 曾 肖 田 董 袁 潘 于 蒋 蔡 \
    余 杜 叶 程 苏 魏 吕 丁 任 沈 姚 卢 姜 崔 钟 谭 陆 汪 范 金 \
    石 廖 贾 夏 韦 付 方 白 邹 孟 熊 秦 邱 江 尹 薛 闫 段 雷 侯 \
    龙 史 陶 黎 贺 顾 毛 郝 龚 邵 万 钱 严 覃 武 戴 莫 孔 向 汤";

/// Common given-name characters, space separated.
const GIVEN_CHARS: &str = "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 秀 霞 平 \
    刚 桂 英 华 玉 兰 红 建 国 文 辉 志 波 斌 宇 浩 鹏 飞 凯 亮 \
    晨 欣 怡 佳 琳 雪 梅 婷 慧 俊 峰 鑫 宁 博 然 涵 睿 轩 子 梓 \
    思 雨 晓 海 春 林 冬 云 新 庆 德 荣 安 成 光 金 龙 东 永 立 \
    生 元 昊 天 嘉 琪 彤 萌 瑶 颖 洁 帆 阳 卫 丹 燕";

/// Rare given-name characters (often missing from GB2312 fonts and legacy systems).
const RARE_GIVEN: [&str; 10] = ["喆", "堃", "玥", "昇", "祎", "垚", "犇", "彧", "珺", "琍"];

const TEAMS: [&str; 3] = ["work_team", "assault_team", "grid_member"];

/// Categories with (epidemic-period weight, July–December weight).
const CATEGORIES: [(&str, u32, u32); 9] = [
    ("policy_outreach", 2, 15),
    ("serve_residents", 4, 20),
    ("deliberation", 0, 10),
    ("environment", 2, 15),
    ("traffic", 2, 10),
    ("patrol", 3, 12),
    ("paired_support", 0, 10),
    ("emergency", 2, 5),
    ("epidemic", 85, 3),
];

/// Small, fast, portable PRNG (xoshiro256++ seeded by SplitMix64), so streams never change
/// with a dependency upgrade.
struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed;
        let a = splitmix64(&mut x);
        let mut y = a ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let s = [
            splitmix64(&mut y),
            splitmix64(&mut y),
            splitmix64(&mut y),
            splitmix64(&mut y),
        ];
        Rng { s }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`).
    #[inline]
    fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    #[inline]
    fn below_usize(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    #[inline]
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
    }

    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
}

/// Fixed-width identifiers stored back to back.
struct Ids {
    bytes: Vec<u8>,
    width: usize,
}

impl Ids {
    fn new(prefix: &str, count: usize, digits: usize) -> Self {
        let width = prefix.len() + digits;
        let mut bytes = Vec::with_capacity(width * count);
        for i in 0..count {
            bytes.extend_from_slice(prefix.as_bytes());
            put_num(&mut bytes, i as u64 + 1, digits);
        }
        Ids { bytes, width }
    }

    #[inline]
    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[i * self.width..(i + 1) * self.width]
    }
}

#[inline]
fn put_num(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in tmp.len() - i..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// `M` + zero-padded 1-based number, on the stack.
fn member_id(m: usize, width: usize) -> ([u8; 24], usize) {
    let mut b = [b'0'; 24];
    b[0] = b'M';
    let mut n = m as u64 + 1;
    let len = 1 + digits_for(m + 1, width);
    let mut i = len;
    while n > 0 {
        i -= 1;
        b[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    (b, len)
}

fn digits_for(n: usize, min: usize) -> usize {
    let mut d = 1;
    let mut x = n;
    while x >= 10 {
        x /= 10;
        d += 1;
    }
    d.max(min)
}

/// Everything shared by all chunks: calendar, communities, branches.
struct World {
    seed: u64,
    members: usize,
    member_digits: usize,
    dates: Vec<[u8; 10]>,
    weekend: Vec<bool>,
    times: Vec<[u8; 8]>,
    two_digits: Vec<[u8; 2]>,
    surnames: Vec<&'static str>,
    given: Vec<&'static str>,
    communities: Ids,
    branches: Ids,
    grids: Vec<u32>,
    contact: Vec<u32>,
    bad_workteam: Vec<bool>,
    jan2: u32,
    feb6: u32,
    feb7: u32,
    apr30: u32,
    may1: u32,
    may6: u32,
    jul1: u32,
    sep30: u32,
    last: u32,
}

fn day_of(year: i32, month: u32, day: u32) -> Result<u32, Error> {
    NaiveDate::from_ymd_opt(year, month, day)
        .map(|d| d.ordinal0())
        .ok_or(Error::InvalidDate { year, month, day })
}

impl World {
    fn n_comm(&self) -> usize {
        self.grids.len()
    }

    fn n_branch(&self) -> usize {
        self.contact.len()
    }

    #[inline]
    fn date(&self, buf: &mut Vec<u8>, day: u32) {
        buf.extend_from_slice(&self.dates[day as usize]);
    }

    #[inline]
    fn datetime(&self, buf: &mut Vec<u8>, day: u32, minute: u32) {
        buf.extend_from_slice(&self.dates[day as usize]);
        buf.push(b' ');
        buf.extend_from_slice(&self.times[minute as usize]);
    }
}

/// Builds the shared world and writes the three small tables into `small[0..3]`.
fn build_world(opts: &GenOptions, small: &mut [(Vec<u8>, u64); 3]) -> Result<World, Error> {
    let year = opts.year;
    if !(1000..=9999).contains(&year) {
        return Err(Error::YearOutOfRange { year });
    }
    let first = NaiveDate::from_ymd_opt(year, 1, 1).ok_or(Error::InvalidYear { year })?;
    let ndays = if first.leap_year() { 366 } else { 365 };
    let mut dates = Vec::with_capacity(ndays);
    let mut weekend = Vec::with_capacity(ndays);
    for d in first.iter_days().take(ndays) {
        let s = d.format("%Y-%m-%d").to_string();
        let mut b = [0u8; 10];
        b.copy_from_slice(s.as_bytes());
        dates.push(b);
        weekend.push(matches!(d.weekday(), Weekday::Sat | Weekday::Sun));
    }
    let mut times = Vec::with_capacity(1440);
    for m in 0..1440u32 {
        let (h, mi) = (m / 60, m % 60);
        times.push([
            b'0' + (h / 10) as u8,
            b'0' + (h % 10) as u8,
            b':',
            b'0' + (mi / 10) as u8,
            b'0' + (mi % 10) as u8,
            b':',
            b'0',
            b'0',
        ]);
    }
    let two_digits = (0..100u8).map(|i| [b'0' + i / 10, b'0' + i % 10]).collect();

    let members = opts.members;
    let n_comm = ((members + 250) / 500).max(3);
    let n_branch = ((members + 20) / 40).max(2);
    let org_digits = digits_for(n_comm.max(n_branch), 6);
    let communities = Ids::new("CM", n_comm, org_digits);
    let community_orgs = Ids::new("CO", n_comm, org_digits);
    let branches = Ids::new("UB", n_branch, org_digits);

    let mut rng = Rng::new(opts.seed, u64::MAX);
    let district_w: Vec<u32> = DISTRICTS.iter().map(|d| d.1).collect();
    let places: Vec<&str> = PLACE_WORDS.split_whitespace().collect();
    let names_per_round = places.len() * PLACE_SUFFIX.len();
    let place_offset = rng.below_usize(places.len());

    // communities + community organizations
    let [comm_buf, org_buf, reg_buf] = small;
    let mut grids = Vec::with_capacity(n_comm);
    let mut comm_names: Vec<String> = Vec::with_capacity(n_comm);
    for i in 0..n_comm {
        let mut name = String::new();
        name.push_str(places[(i + place_offset) % places.len()]);
        name.push_str(PLACE_SUFFIX[(i / places.len()) % PLACE_SUFFIX.len()]);
        if i >= names_per_round {
            name.push_str(&(i / names_per_round + 1).to_string());
        }
        name.push_str("社区");
        let district = DISTRICTS[rng.weighted(&district_w)].0;
        let b = &mut comm_buf.0;
        b.extend_from_slice(communities.get(i));
        b.push(b',');
        b.extend_from_slice(name.as_bytes());
        b.push(b',');
        b.extend_from_slice(district.as_bytes());
        b.push(b'\n');
        comm_buf.1 += 1;
        grids.push(6 + rng.below(15));
        comm_names.push(name);
    }
    for (i, name) in comm_names.iter().enumerate() {
        let b = &mut org_buf.0;
        b.extend_from_slice(community_orgs.get(i));
        b.push(b',');
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice("党委,community,".as_bytes());
        b.extend_from_slice(communities.get(i));
        b.push(b'\n');
        org_buf.1 += 1;
    }

    let jul15 = day_of(year, 7, 15)?;
    let mut contact = Vec::with_capacity(n_branch);
    let mut bad_workteam = Vec::with_capacity(n_branch);
    for i in 0..n_branch {
        let c = rng.below_usize(n_comm);
        contact.push(c as u32);
        bad_workteam.push(rng.chance(P_BAD_WORKTEAM));
        let b = &mut org_buf.0;
        b.extend_from_slice(branches.get(i));
        b.push(b',');
        b.extend_from_slice(DEPTS[i % DEPTS.len()].as_bytes());
        b.extend_from_slice("第".as_bytes());
        put_num(b, (i / DEPTS.len()) as u64 + 1, 1);
        b.extend_from_slice("党支部,unit_branch,".as_bytes());
        b.extend_from_slice(communities.get(c));
        b.push(b'\n');
        org_buf.1 += 1;
        if !rng.chance(P_UNREGISTERED) {
            let day = jul15 + rng.below(48);
            let r = &mut *reg_buf;
            r.0.extend_from_slice(branches.get(i));
            r.0.push(b',');
            r.0.extend_from_slice(communities.get(c));
            r.0.push(b',');
            r.0.extend_from_slice(&dates[day as usize]);
            r.0.push(b'\n');
            r.1 += 1;
        }
    }

    Ok(World {
        seed: opts.seed,
        members,
        member_digits: digits_for(members, 8),
        dates,
        weekend,
        times,
        two_digits,
        surnames: SURNAME_CHARS.split_whitespace().collect(),
        given: GIVEN_CHARS.split_whitespace().collect(),
        communities,
        branches,
        grids,
        contact,
        bad_workteam,
        jan2: day_of(year, 1, 2)?,
        feb6: day_of(year, 2, 6)?,
        feb7: day_of(year, 2, 7)?,
        apr30: day_of(year, 4, 30)?,
        may1: day_of(year, 5, 1)?,
        may6: day_of(year, 5, 6)?,
        jul1: day_of(year, 7, 1)?,
        sep30: day_of(year, 9, 30)?,
        last: (ndays - 1) as u32,
    })
}

/// Set of days of the year already used by one member.
#[derive(Clone, Copy, Default)]
struct DaySet([u64; 6]);

impl DaySet {
    #[inline]
    fn insert(&mut self, d: u32) -> bool {
        let (w, b) = ((d / 64) as usize, d % 64);
        let fresh = self.0[w] & (1 << b) == 0;
        self.0[w] |= 1 << b;
        fresh
    }
}

/// Draws a fresh day in `lo..=hi` accepted by `ok`; `None` after too many misses.
#[inline]
fn pick_day(
    rng: &mut Rng,
    used: &mut DaySet,
    lo: u32,
    hi: u32,
    ok: impl Fn(u32) -> bool,
) -> Option<u32> {
    if hi < lo {
        return None;
    }
    for _ in 0..64 {
        let d = lo + rng.below(hi - lo + 1);
        if ok(d) && used.insert(d) {
            return Some(d);
        }
    }
    None
}

#[derive(Clone, Copy)]
struct Service {
    day: u32,
    start: u32,
    minutes: u32,
    community: u32,
    category: u8,
    tasked: u8,
    verified: bool,
    checkin: bool,
}

#[derive(Default)]
struct Scratch {
    services: Vec<Service>,
    checkins: Vec<(u32, u32, u32)>,
    days: Vec<u32>,
}

struct ChunkOut {
    bufs: [Vec<u8>; MEMBER_TABLES],
    rows: [u64; MEMBER_TABLES],
}

const BYTES_PER_MEMBER: [usize; MEMBER_TABLES] = [60, 70, 30, 50, 2200, 850, 180];

fn gen_chunk(w: &World, chunk: usize) -> ChunkOut {
    let start = chunk * CHUNK;
    let end = (start + CHUNK).min(w.members);
    let n = end - start;
    let mut out = ChunkOut {
        bufs: std::array::from_fn(|t| Vec::with_capacity(n * BYTES_PER_MEMBER[t])),
        rows: [0; MEMBER_TABLES],
    };
    let mut rng = Rng::new(w.seed, chunk as u64);
    let mut scratch = Scratch::default();
    let epi_w: Vec<u32> = CATEGORIES.iter().map(|c| c.1).collect();
    let cycle_w: Vec<u32> = CATEGORIES.iter().map(|c| c.2).collect();
    let weights = (epi_w.as_slice(), cycle_w.as_slice());
    for m in start..end {
        gen_member(w, &mut rng, m, &mut out, &mut scratch, weights);
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Employment {
    InService,
    Retired,
    Other,
}

fn pick_team(rng: &mut Rng, no_work_team: bool, not: Option<usize>) -> usize {
    loop {
        let t = rng.weighted(&[30, 25, 45]);
        if (no_work_team && t == 0) || Some(t) == not {
            continue;
        }
        return t;
    }
}

/// One member's rows, drawn in a fixed order from the chunk's random stream (the order of
/// draws is what keeps a seed's files byte-identical).
struct MemberGen<'a> {
    w: &'a World,
    rng: &'a mut Rng,
    out: &'a mut ChunkOut,
    sc: &'a mut Scratch,
    m: usize,
    id: &'a [u8],
    branch: usize,
    contact: u32,
    residence: u32,
    employment: Employment,
    /// The first member of each branch: lives in the contact community and joins its work
    /// team there, so that only branches flagged bad lack a work team.
    anchor: bool,
}

/// How a member answered the epidemic notices (directives 1–3).
#[derive(Clone, Copy)]
struct Sinking {
    /// The community reported to and the day, if the member reported.
    at: Option<(u32, u32)>,
    nominal: bool,
    unassigned: bool,
    rollcall: bool,
    disobey: bool,
    detach_fail: bool,
}

fn gen_member(
    w: &World,
    rng: &mut Rng,
    m: usize,
    out: &mut ChunkOut,
    sc: &mut Scratch,
    weights: (&[u32], &[u32]),
) {
    let idbuf = member_id(m, w.member_digits);
    let id = &idbuf.0[..idbuf.1];
    let n_branch = w.n_branch();
    let anchor = m < n_branch;
    let branch = if anchor { m } else { rng.below_usize(n_branch) };
    let contact = w.contact[branch];
    let residence = if anchor {
        contact
    } else {
        rng.below_usize(w.n_comm()) as u32
    };
    let employment = if anchor {
        Employment::InService
    } else {
        match rng.below(100) {
            0..80 => Employment::InService,
            80..95 => Employment::Retired,
            _ => Employment::Other,
        }
    };
    let mut g = MemberGen {
        w,
        rng,
        out,
        sc,
        m,
        id,
        branch,
        contact,
        residence,
        employment,
        anchor,
    };
    g.member_row();
    let sinking = g.epidemic_report();
    let dual_day = g.dual_registration();
    if let Some(d) = dual_day {
        g.filing(d);
    }
    g.grid_assignment(&sinking);
    g.services(&sinking, dual_day, weights);
    g.unit_attendance(&sinking);
}

impl MemberGen<'_> {
    fn in_service(&self) -> bool {
        self.employment == Employment::InService
    }

    /// The `members` row: id, a name, branch, residence community, employment.
    fn member_row(&mut self) {
        let (w, rng) = (self.w, &mut *self.rng);
        let b = &mut self.out.bufs[T_MEMBERS];
        b.extend_from_slice(self.id);
        b.push(b',');
        let s = rng
            .below_usize(w.surnames.len())
            .min(rng.below_usize(w.surnames.len()));
        b.extend_from_slice(w.surnames[s].as_bytes());
        let given = if rng.chance(0.35) { 1 } else { 2 };
        for _ in 0..given {
            let g = if rng.chance(0.02) {
                RARE_GIVEN[rng.below_usize(RARE_GIVEN.len())]
            } else {
                w.given[rng.below_usize(w.given.len())]
            };
            b.extend_from_slice(g.as_bytes());
        }
        b.push(b',');
        b.extend_from_slice(w.branches.get(self.branch));
        b.push(b',');
        b.extend_from_slice(w.communities.get(self.residence as usize));
        b.extend_from_slice(match self.employment {
            Employment::InService => b",in_service\n",
            Employment::Retired => b",retired\n",
            Employment::Other => b",other\n",
        });
        self.out.rows[T_MEMBERS] += 1;
    }

    /// The epidemic report (directive 1): none, only another community, or residence; and
    /// how the member then behaves.
    fn epidemic_report(&mut self) -> Sinking {
        let (w, anchor, residence, contact) = (self.w, self.anchor, self.residence, self.contact);
        let in_service = self.in_service();
        let n_comm = w.n_comm();
        let rng = &mut *self.rng;
        let roll: f64 = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let epi_comm: Option<u32> = if anchor || roll >= P_NO_EPIDEMIC + P_OTHER_ONLY {
            Some(residence)
        } else if roll < P_NO_EPIDEMIC {
            None
        } else if contact != residence {
            Some(contact)
        } else {
            Some(((residence as usize + 1 + rng.below_usize(n_comm - 1)) % n_comm) as u32)
        };
        let epi_day = epi_comm.map(|_| {
            w.feb7
                + match rng.below(10) {
                    0..6 => rng.below(7),
                    6..9 => 7 + rng.below(13),
                    _ => 20 + rng.below(25),
                }
        });
        let at = epi_comm.zip(epi_day);
        let nominal = at.is_some() && !anchor && rng.chance(P_NOMINAL);
        let unassigned = at.is_some() && !anchor && rng.chance(P_UNASSIGNED);
        let rollcall = at.is_some() && !nominal && rng.chance(P_ROLLCALL);
        let disobey = at.is_some() && !nominal && rng.chance(P_DISOBEY);
        let detach_fail = at.is_some() && in_service && rng.chance(P_DETACH_FAIL);
        if let Some((c, d)) = at {
            let b = &mut self.out.bufs[T_REPORTS];
            b.extend_from_slice(self.id);
            b.push(b',');
            b.extend_from_slice(w.communities.get(c as usize));
            b.push(b',');
            w.date(b, d);
            b.extend_from_slice(b",epidemic\n");
            self.out.rows[T_REPORTS] += 1;
        }
        Sinking {
            at,
            nominal,
            unassigned,
            rollcall,
            disobey,
            detach_fail,
        }
    }

    /// The dual-registration report (directive 4) of a member in service; its day.
    fn dual_registration(&mut self) -> Option<u32> {
        let w = self.w;
        if !(self.in_service() && (self.anchor || self.rng.chance(P_DUAL))) {
            return None;
        }
        let d = w.jul1 + self.rng.below(w.sep30 - w.jul1 + 1);
        let b = &mut self.out.bufs[T_REPORTS];
        b.extend_from_slice(self.id);
        b.push(b',');
        b.extend_from_slice(w.communities.get(self.residence as usize));
        b.push(b',');
        w.date(b, d);
        b.extend_from_slice(b",dual_registration\n");
        self.out.rows[T_REPORTS] += 1;
        Some(d)
    }

    /// The filing with the unit's branch after the dual-registration report on day `d`:
    /// none, with another branch, too early, or in time.
    fn filing(&mut self, d: u32) {
        let (w, branch) = (self.w, self.branch);
        let n_branch = w.n_branch();
        let rng = &mut *self.rng;
        let r: f64 = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        let filing = if r < P_NO_FILING {
            None
        } else if r < P_NO_FILING + P_FILING_OTHER {
            let other = (branch + 1 + rng.below_usize(n_branch - 1)) % n_branch;
            Some((other, d + rng.below(22)))
        } else if r < P_NO_FILING + P_FILING_OTHER + P_FILING_EARLY {
            Some((branch, d - 1 - rng.below(20)))
        } else {
            Some((branch, d + rng.below(22)))
        };
        if let Some((br, fd)) = filing {
            let b = &mut self.out.bufs[T_FILINGS];
            b.extend_from_slice(self.id);
            b.push(b',');
            b.extend_from_slice(w.branches.get(br));
            b.push(b',');
            w.date(b, fd.min(w.last));
            b.push(b'\n');
            self.out.rows[T_FILINGS] += 1;
        }
    }

    /// The grid assignment (directive 2) of a member who reported, sometimes reassigned.
    fn grid_assignment(&mut self, sinking: &Sinking) {
        let Some((c, d)) = sinking.at else { return };
        if sinking.unassigned {
            return;
        }
        let w = self.w;
        let rng = &mut *self.rng;
        let grid = rng.below(w.grids[c as usize]);
        let no_work = w.bad_workteam[self.branch] && c == self.contact;
        let team = if self.anchor && !no_work {
            0
        } else {
            pick_team(rng, no_work, None)
        };
        let day = (d + rng.below(4)).min(w.apr30);
        let (id, out) = (self.id, &mut *self.out);
        let mut emit = |team: usize, day: u32| {
            let b = &mut out.bufs[T_ASSIGN];
            b.extend_from_slice(id);
            b.push(b',');
            b.extend_from_slice(w.communities.get(c as usize));
            b.push(b',');
            b.extend_from_slice(w.communities.get(c as usize));
            b.extend_from_slice(b"-G");
            b.extend_from_slice(&w.two_digits[grid as usize]);
            b.push(b',');
            b.extend_from_slice(TEAMS[team].as_bytes());
            b.push(b',');
            w.date(b, day);
            b.push(b'\n');
            out.rows[T_ASSIGN] += 1;
        };
        emit(team, day);
        if rng.chance(P_REASSIGNED) {
            let team2 = pick_team(rng, no_work, Some(team));
            emit(team2, (day + 7 + rng.below(24)).min(w.apr30));
        }
    }

    /// Services (directives 3 and 5) and check-ins: epidemic services after the report, then
    /// the July–December cycle; written in day order.
    fn services(
        &mut self,
        sinking: &Sinking,
        dual_day: Option<u32>,
        (epi_w, cycle_w): (&[u32], &[u32]),
    ) {
        self.sc.services.clear();
        self.sc.checkins.clear();
        let mut used = DaySet::default();
        self.epidemic_services(sinking, &mut used, epi_w);
        if !sinking.nominal {
            self.cycle_services(dual_day, &mut used, cycle_w);
        }
        self.write_services();
    }

    fn epidemic_services(&mut self, sinking: &Sinking, used: &mut DaySet, epi_w: &[u32]) {
        let Some((c, d)) = sinking.at else { return };
        if sinking.nominal {
            return;
        }
        let (w, rng, sc) = (self.w, &mut *self.rng, &mut *self.sc);
        let k = 6 + rng.below(11);
        let first = sc.services.len();
        for _ in 0..k {
            let Some(day) = pick_day(rng, used, d, w.apr30, |_| true) else {
                break;
            };
            sc.services.push(Service {
                day,
                start: 420 + 30 * rng.below(22),
                minutes: 60 + 30 * rng.below(7),
                community: c,
                category: rng.weighted(epi_w) as u8,
                tasked: 0,
                verified: rng.chance(P_VERIFIED),
                checkin: rng.chance(P_CHECKIN),
            });
        }
        if sinking.disobey && sc.services.len() > first {
            for _ in 0..1 + rng.below(3) {
                let i = first + rng.below_usize(sc.services.len() - first);
                sc.services[i].tasked = if rng.chance(0.7) { 1 } else { 2 };
            }
        }
        if sinking.rollcall {
            for _ in 0..2 + rng.below(5) {
                if let Some(day) = pick_day(rng, used, d, w.apr30, |_| true) {
                    sc.checkins.push((day, 480 + rng.below(600), c));
                }
            }
        }
    }

    /// July–December cycle: verified hours above or (for a share) below 20.
    fn cycle_services(&mut self, dual_day: Option<u32>, used: &mut DaySet, cycle_w: &[u32]) {
        let (w, rng, sc) = (self.w, &mut *self.rng, &mut *self.sc);
        let low = rng.chance(P_LOW_HOURS);
        let target = if low {
            60 * (1 + rng.below(18))
        } else {
            1200 + 30 * rng.below(37)
        };
        let mut working_hours = if rng.chance(P_WORK_HOURS) {
            1 + rng.below(2)
        } else {
            0
        };
        let from = dual_day.unwrap_or(w.jul1).max(w.jul1);
        let mut verified = 0;
        while verified < target && sc.services.len() < 60 {
            let minutes = 60 + 30 * rng.below(7);
            if low && verified + minutes >= target {
                break;
            }
            let forced = working_hours > 0;
            let Some(day) = pick_day(rng, used, from, w.last, |d| {
                !forced || !w.weekend[d as usize]
            }) else {
                break;
            };
            let start = if forced {
                working_hours -= 1;
                540 + 30 * rng.below(13)
            } else if w.weekend[day as usize] {
                480 + 30 * rng.below(17)
            } else {
                1080 + 30 * rng.below(4)
            };
            let ok = rng.chance(P_VERIFIED);
            if ok {
                verified += minutes;
            }
            sc.services.push(Service {
                day,
                start,
                minutes,
                community: if rng.chance(0.95) {
                    self.residence
                } else {
                    self.contact
                },
                category: rng.weighted(cycle_w) as u8,
                tasked: rng.weighted(&[65, 20, 15]) as u8,
                verified: ok,
                checkin: rng.chance(P_CHECKIN),
            });
        }
    }

    /// The services in day order, and the check-ins (of services and roll-calls).
    fn write_services(&mut self) {
        let (w, rng, sc, out) = (self.w, &mut *self.rng, &mut *self.sc, &mut *self.out);
        let digits = &self.id[1..];
        sc.services.sort_unstable_by_key(|s| s.day);
        for (seq, s) in sc.services.iter().enumerate() {
            let b = &mut out.bufs[T_SERVICES];
            b.push(b'S');
            b.extend_from_slice(digits);
            put_num(b, seq as u64 + 1, 3);
            b.push(b',');
            b.extend_from_slice(self.id);
            b.push(b',');
            b.extend_from_slice(w.communities.get(s.community as usize));
            b.push(b',');
            w.datetime(b, s.day, s.start);
            b.push(b',');
            w.datetime(b, s.day, s.start + s.minutes);
            b.push(b',');
            b.extend_from_slice(CATEGORIES[s.category as usize].0.as_bytes());
            b.extend_from_slice(match s.tasked {
                0 => b",community",
                1 => b",unit",
                _ => b",self",
            });
            b.extend_from_slice(if s.verified { b",true\n" } else { b",false\n" });
            if s.checkin {
                sc.checkins
                    .push((s.day, s.start - rng.below(21), s.community));
            }
        }
        out.rows[T_SERVICES] += sc.services.len() as u64;
        sc.checkins.sort_unstable();
        for &(day, minute, c) in &sc.checkins {
            let b = &mut out.bufs[T_CHECKINS];
            b.extend_from_slice(self.id);
            b.push(b',');
            b.extend_from_slice(w.communities.get(c as usize));
            b.push(b',');
            w.datetime(b, day, minute);
            b.push(b'\n');
        }
        out.rows[T_CHECKINS] += sc.checkins.len() as u64;
    }

    /// Days at the unit (detachment, directive 3) of a member in service: ordinary working
    /// days outside the epidemic, and for some, days at the unit during it.
    fn unit_attendance(&mut self, sinking: &Sinking) {
        if !self.in_service() {
            return;
        }
        let (w, rng, sc) = (self.w, &mut *self.rng, &mut *self.sc);
        let mut used = DaySet::default();
        sc.days.clear();
        if self.m == 0 {
            // pins the latest date of the dataset to the last day of the year
            used.insert(w.last);
            sc.days.push(w.last);
        }
        if sinking.detach_fail
            && let Some((_, d)) = sinking.at
        {
            for _ in 0..1 + rng.below(3) {
                if let Some(day) = pick_day(rng, &mut used, d, w.may1, |d| !w.weekend[d as usize]) {
                    sc.days.push(day);
                }
            }
        }
        let early = w.feb6 - w.jan2 + 1;
        let late = w.last - w.may6 + 1;
        for _ in 0..6 + rng.below(9) {
            for _ in 0..16 {
                let i = rng.below(early + late);
                let day = if i < early {
                    w.jan2 + i
                } else {
                    w.may6 + i - early
                };
                if !w.weekend[day as usize] && used.insert(day) {
                    sc.days.push(day);
                    break;
                }
            }
        }
        sc.days.sort_unstable();
        let b = &mut self.out.bufs[T_ATTEND];
        for &day in &sc.days {
            b.extend_from_slice(self.id);
            b.push(b',');
            w.date(b, day);
            b.push(b'\n');
        }
        self.out.rows[T_ATTEND] += sc.days.len() as u64;
    }
}

/// The file of table number `table`.
fn table_path(opts: &GenOptions, table: usize) -> PathBuf {
    opts.out.join(format!("{}.csv", TABLES[table]))
}

fn create(opts: &GenOptions, table: usize) -> Result<BufWriter<File>, Error> {
    let path = table_path(opts, table);
    let f = File::create(&path).map_err(|source| Error::Create {
        path: path.clone(),
        source,
    })?;
    let mut w = BufWriter::with_capacity(1 << 21, f);
    w.write_all(HEADERS[table].as_bytes())
        .and_then(|()| w.write_all(b"\n"))
        .map_err(|error| Error::Write { path, error })?;
    Ok(w)
}

/// Generates the dataset into `opts.out` (created if missing), one `NAME.csv` per table.
///
/// The same options always give byte-identical files, whatever the number of threads:
/// members are made in chunks of fixed size, each with its own RNG stream seeded from
/// (seed, chunk index), generated in parallel with rayon and written in chunk order.
pub fn generate(opts: &GenOptions) -> Result<GenReport, Error> {
    if opts.members == 0 {
        return Err(Error::NoMembers);
    }
    std::fs::create_dir_all(&opts.out).map_err(|source| Error::Create {
        path: opts.out.clone(),
        source,
    })?;
    let mut small: [(Vec<u8>, u64); 3] = Default::default();
    let world = build_world(opts, &mut small)?;

    let mut rows = [0u64; 10];
    let mut bytes = [0u64; 10];
    for (k, t) in [0usize, 1, 9].into_iter().enumerate() {
        let mut f = create(opts, t)?;
        f.write_all(&small[k].0)
            .and_then(|()| f.flush())
            .map_err(|error| Error::Write {
                path: table_path(opts, t),
                error,
            })?;
        rows[t] = small[k].1;
        bytes[t] = (HEADERS[t].len() + 1 + small[k].0.len()) as u64;
    }

    let mut writers = Vec::with_capacity(MEMBER_TABLES);
    for t in 0..MEMBER_TABLES {
        let table = FIRST_MEMBER_TABLE + t;
        writers.push(create(opts, table)?);
        bytes[table] = HEADERS[table].len() as u64 + 1;
    }

    let n_chunks = opts.members.div_ceil(CHUNK);
    let batch = (2 * rayon::current_num_threads()).max(2);
    // generation of batch i+1 overlaps writing of batch i
    let (tx, rx) = sync_channel::<Vec<ChunkOut>>(1);
    let paths: Vec<PathBuf> = (0..MEMBER_TABLES)
        .map(|t| table_path(opts, FIRST_MEMBER_TABLE + t))
        .collect();
    let writer = std::thread::spawn(move || -> Result<([u64; 7], [u64; 7]), Error> {
        let failed = |t: usize| {
            let path = paths[t].clone();
            move |error: std::io::Error| Error::Write { path, error }
        };
        let mut rows = [0u64; MEMBER_TABLES];
        let mut bytes = [0u64; MEMBER_TABLES];
        for outs in rx {
            for out in outs {
                for t in 0..MEMBER_TABLES {
                    writers[t].write_all(&out.bufs[t]).map_err(failed(t))?;
                    bytes[t] += out.bufs[t].len() as u64;
                    rows[t] += out.rows[t];
                }
            }
        }
        for (t, mut f) in writers.into_iter().enumerate() {
            f.flush().map_err(failed(t))?;
        }
        Ok((rows, bytes))
    });
    let mut first = 0;
    while first < n_chunks {
        let last = (first + batch).min(n_chunks);
        let outs: Vec<ChunkOut> = (first..last)
            .into_par_iter()
            .map(|c| gen_chunk(&world, c))
            .collect();
        if tx.send(outs).is_err() {
            break; // the writer failed; its error is reported below
        }
        first = last;
    }
    drop(tx);
    let (mrows, mbytes) = writer.join().map_err(|_| Error::WriterPanicked)??;
    let member_tables = FIRST_MEMBER_TABLE..FIRST_MEMBER_TABLE + MEMBER_TABLES;
    rows[member_tables.clone()].copy_from_slice(&mrows);
    for (b, m) in bytes[member_tables].iter_mut().zip(mbytes) {
        *b += m;
    }

    Ok(GenReport {
        tables: TABLES
            .iter()
            .enumerate()
            .map(|(t, name)| (name.to_string(), rows[t], bytes[t]))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let dir = std::env::temp_dir().join(format!(
                "rulebook-gen-test-{}-{tag}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run(members: usize, seed: u64, year: i32, dir: &Path) -> GenReport {
        let opts = GenOptions {
            members,
            seed,
            out: dir.to_path_buf(),
            year,
        };
        generate(&opts).expect("generate")
    }

    fn read(dir: &Path, table: &str) -> String {
        std::fs::read_to_string(dir.join(format!("{table}.csv"))).expect("read table")
    }

    /// Data rows of a table, split into fields (the generator never needs quoting).
    fn rows(dir: &Path, table: &str) -> Vec<Vec<String>> {
        read(dir, table)
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    fn rows_of(report: &GenReport, table: &str) -> u64 {
        report
            .tables
            .iter()
            .find(|t| t.0 == table)
            .expect("table")
            .1
    }

    #[test]
    fn same_options_give_identical_bytes_whatever_the_threads() {
        let a = TempDir::new("a");
        let b = TempDir::new("b");
        let c = TempDir::new("c");
        let members = 2 * CHUNK + 123; // three chunks, the last one partial
        let ra = run(members, 7, 2020, &a.0);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool");
        let rb = pool.install(|| run(members, 7, 2020, &b.0));
        let pool3 = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let rc = pool3.install(|| run(members, 7, 2020, &c.0));
        assert_eq!(ra, rb);
        assert_eq!(ra, rc);
        for t in TABLES {
            let x = std::fs::read(a.0.join(format!("{t}.csv"))).expect("a");
            let y = std::fs::read(b.0.join(format!("{t}.csv"))).expect("b");
            let z = std::fs::read(c.0.join(format!("{t}.csv"))).expect("c");
            assert!(x == y && x == z, "{t}.csv differs between runs");
            let reported = ra.tables.iter().find(|r| r.0 == t).expect("row").2;
            assert_eq!(reported, x.len() as u64, "{t}: reported bytes");
        }
        // another seed gives other data
        let d = TempDir::new("d");
        run(members, 8, 2020, &d.0);
        assert_ne!(read(&a.0, "services"), read(&d.0, "services"));
    }

    #[test]
    fn headers_follow_the_contract() {
        let dir = TempDir::new("headers");
        let report = run(300, 1, 2020, &dir.0);
        let expected = [
            ("communities", "community_id,name,district"),
            ("organizations", "org_id,name,kind,community_id"),
            (
                "members",
                "member_id,name,branch_id,residence_community_id,employment",
            ),
            ("reports", "member_id,community_id,reported_on,campaign"),
            ("filings", "member_id,branch_id,filed_on"),
            (
                "assignments",
                "member_id,community_id,grid_id,team,assigned_on",
            ),
            (
                "services",
                "service_id,member_id,community_id,start,end,category,tasked_by,verified",
            ),
            ("checkins", "member_id,community_id,at"),
            ("unit_attendance", "member_id,date"),
            ("org_registrations", "org_id,community_id,registered_on"),
        ];
        let names: Vec<&str> = report.tables.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, expected.map(|e| e.0));
        for (table, header) in expected {
            let text = read(&dir.0, table);
            assert_eq!(text.lines().next(), Some(header), "{table}");
            let columns = header.split(',').count();
            for (i, line) in text.lines().enumerate() {
                assert_eq!(line.split(',').count(), columns, "{table} line {}", i + 1);
            }
            assert!(text.ends_with('\n'));
        }
    }

    #[test]
    fn row_counts_are_roughly_proportional() {
        let small = TempDir::new("small");
        let large = TempDir::new("large");
        let rs = run(2_000, 3, 2020, &small.0);
        let rl = run(8_000, 3, 2020, &large.0);
        assert_eq!(rows_of(&rs, "members"), 2_000);
        assert_eq!(rows_of(&rl, "members"), 8_000);
        assert_eq!(rows_of(&rs, "communities"), 4);
        assert_eq!(rows_of(&rl, "communities"), 16);
        assert_eq!(rows_of(&rl, "organizations"), 16 + 200);
        let per_member = |t: &str| rows_of(&rl, t) as f64 / 8_000.0;
        let expected = [
            ("services", 17.0, 23.0),
            ("checkins", 16.0, 22.0),
            ("unit_attendance", 6.5, 9.5),
            ("reports", 1.2, 1.8),
            ("filings", 0.5, 0.85),
            ("assignments", 0.75, 1.05),
        ];
        for (t, lo, hi) in expected {
            let r = per_member(t);
            assert!((lo..=hi).contains(&r), "{t}: {r} rows per member");
            let ratio = rows_of(&rl, t) as f64 / rows_of(&rs, t) as f64;
            assert!(
                (3.5..=4.5).contains(&ratio),
                "{t}: 4x members gave {ratio}x rows"
            );
        }
        let regs = rows_of(&rl, "org_registrations") as f64 / 200.0;
        assert!((0.8..=0.97).contains(&regs), "registered branches {regs}");
        let tiny = TempDir::new("tiny");
        let rt = run(1, 3, 2020, &tiny.0);
        assert_eq!(rows_of(&rt, "communities"), 3);
        assert_eq!(rows_of(&rt, "organizations"), 3 + 2);
    }

    #[test]
    fn references_and_values_are_consistent() {
        let dir = TempDir::new("refs");
        run(5_000, 11, 2020, &dir.0);
        let communities: HashSet<String> = rows(&dir.0, "communities")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let orgs = rows(&dir.0, "organizations");
        let mut branches = HashSet::new();
        for o in &orgs {
            assert!(communities.contains(&o[3]), "org {o:?}");
            match o[2].as_str() {
                "unit_branch" => assert!(branches.insert(o[0].clone())),
                "community" => assert!(o[0].starts_with("CO")),
                k => panic!("kind {k}"),
            }
        }
        let members = rows(&dir.0, "members");
        let mut ids = HashSet::new();
        for m in &members {
            assert!(ids.insert(m[0].clone()), "duplicate member {}", m[0]);
            assert!(branches.contains(&m[2]) && communities.contains(&m[3]));
            assert!(["in_service", "retired", "other"].contains(&m[4].as_str()));
            let chars = m[1].chars().count();
            assert!((2..=3).contains(&chars), "name {}", m[1]);
        }
        let is_date = |s: &str| s.len() == 10 && s.starts_with("2020-") && s <= "2020-12-31";
        let is_datetime = |s: &str| s.len() == 19 && is_date(&s[..10]) && &s[10..11] == " ";
        let mut latest = String::new();
        let mut seen = HashSet::new();
        for table in [
            "reports",
            "filings",
            "assignments",
            "services",
            "checkins",
            "unit_attendance",
        ] {
            for r in rows(&dir.0, table) {
                let member = if table == "services" { &r[1] } else { &r[0] };
                assert!(ids.contains(member), "{table}: unknown member {member}");
                if table != "services" {
                    let line = r.join(",");
                    assert!(seen.insert(format!("{table}:{line}")), "duplicate {line}");
                }
                let date = match table {
                    "reports" => {
                        assert!(communities.contains(&r[1]));
                        assert!(["epidemic", "dual_registration"].contains(&r[3].as_str()));
                        r[2].clone()
                    }
                    "filings" => {
                        assert!(branches.contains(&r[1]));
                        r[2].clone()
                    }
                    "assignments" => {
                        assert!(communities.contains(&r[1]) && r[2].starts_with(&r[1]));
                        assert!(TEAMS.contains(&r[3].as_str()));
                        r[4].clone()
                    }
                    "services" => {
                        assert!(communities.contains(&r[2]));
                        assert!(is_datetime(&r[3]) && is_datetime(&r[4]), "{r:?}");
                        assert!(r[4] > r[3], "service {} ends before it starts", r[0]);
                        assert_eq!(r[3][..10], r[4][..10]);
                        assert!(CATEGORIES.iter().any(|c| c.0 == r[5]));
                        assert!(["community", "unit", "self"].contains(&r[6].as_str()));
                        assert!(r[7] == "true" || r[7] == "false");
                        assert!(seen.insert(r[0].clone()), "duplicate service {}", r[0]);
                        r[4].clone()
                    }
                    "checkins" => {
                        assert!(communities.contains(&r[1]));
                        assert!(is_datetime(&r[2]));
                        r[2].clone()
                    }
                    _ => r[1].clone(),
                };
                assert!(is_date(&date[..10]), "{table}: bad date {date}");
                if date[..10] > *latest {
                    latest = date[..10].to_string();
                }
            }
        }
        assert_eq!(latest, "2020-12-31");
        for r in rows(&dir.0, "org_registrations") {
            assert!(branches.contains(&r[0]) && communities.contains(&r[1]));
        }
    }

    #[test]
    fn every_violation_has_a_realistic_share() {
        let dir = TempDir::new("shares");
        run(6_000, 5, 2020, &dir.0);
        let members: HashMap<String, Vec<String>> = rows(&dir.0, "members")
            .into_iter()
            .map(|r| (r[0].clone(), r))
            .collect();
        let n = members.len() as f64;
        let mut epidemic: HashMap<String, Vec<String>> = HashMap::new();
        let mut dual = HashSet::new();
        for r in rows(&dir.0, "reports") {
            if r[3] == "epidemic" {
                assert!(r[2].as_str() >= "2020-02-07");
                epidemic.entry(r[0].clone()).or_default().push(r[1].clone());
            } else {
                assert!(("2020-07-01".."2020-10-01").contains(&r[2].as_str()));
                dual.insert(r[0].clone());
            }
        }
        let assigned: HashSet<String> = rows(&dir.0, "assignments")
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        let mut served = HashSet::new();
        let mut not_community = HashSet::new();
        let mut working = HashSet::new();
        let mut verified: HashMap<String, u32> = HashMap::new();
        for r in rows(&dir.0, "services") {
            served.insert(r[1].clone());
            if r[3].as_str() < "2020-05-01" && r[6] != "community" {
                not_community.insert(r[1].clone());
            }
            if r[3].as_str() >= "2020-07-01" {
                let h = |s: &str| s[11..13].parse::<u32>().expect("hour");
                let day = NaiveDate::parse_from_str(&r[3][..10], "%Y-%m-%d").expect("date");
                let weekday = !matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
                if weekday && h(&r[3]) < 17 && h(&r[4]) >= 9 {
                    working.insert(r[1].clone());
                }
                if r[7] == "true" {
                    let minutes = |s: &str| h(s) * 60 + s[14..16].parse::<u32>().expect("min");
                    *verified.entry(r[1].clone()).or_default() += minutes(&r[4]) - minutes(&r[3]);
                }
            }
        }
        let share = |k: usize, of: usize| k as f64 / of as f64;
        let sinkers = epidemic.len();
        let checks = [
            ("no epidemic report", 1.0 - sinkers as f64 / n),
            (
                "report only to another community",
                share(
                    epidemic
                        .iter()
                        .filter(|(m, cs)| !cs.contains(&members[*m][3]))
                        .count(),
                    sinkers,
                ),
            ),
            (
                "reported but never assigned",
                share(
                    epidemic.keys().filter(|m| !assigned.contains(*m)).count(),
                    sinkers,
                ),
            ),
            (
                "nominal sinking",
                share(
                    epidemic.keys().filter(|m| !served.contains(*m)).count(),
                    sinkers,
                ),
            ),
            (
                "not tasked by community",
                share(not_community.len(), sinkers),
            ),
            ("no dual registration", 1.0 - dual.len() as f64 / n),
            ("weekday working hours", share(working.len(), members.len())),
            (
                "below 20 verified hours",
                share(
                    members
                        .keys()
                        .filter(|m| verified.get(*m).copied().unwrap_or(0) < 1200)
                        .count(),
                    members.len(),
                ),
            ),
        ];
        for (name, s) in checks {
            assert!((0.02..=0.35).contains(&s), "{name}: share {s}");
        }
    }

    #[test]
    fn other_years_end_on_their_last_day() {
        let dir = TempDir::new("year");
        run(500, 2, 2021, &dir.0);
        let last = rows(&dir.0, "unit_attendance")
            .into_iter()
            .map(|r| r[1].clone())
            .max();
        assert_eq!(last.as_deref(), Some("2021-12-31"));
        assert!(
            generate(&GenOptions {
                members: 0,
                ..GenOptions::default()
            })
            .is_err()
        );
    }
}
