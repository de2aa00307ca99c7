//! Province codes (省级行政区划代码), the 34 provincial-level units of GB/T 2260.

use serde::{Deserialize, Serialize};

use super::{IdError, IdKind, IdProblem, require_digits, string_id};

/// (code, Chinese name, English name) of the 34 provincial-level units of GB/T 2260.
const PROVINCES: [(&str, &str, &str); 34] = [
    ("11", "北京市", "Beijing"),
    ("12", "天津市", "Tianjin"),
    ("13", "河北省", "Hebei"),
    ("14", "山西省", "Shanxi"),
    ("15", "内蒙古自治区", "Inner Mongolia"),
    ("21", "辽宁省", "Liaoning"),
    ("22", "吉林省", "Jilin"),
    ("23", "黑龙江省", "Heilongjiang"),
    ("31", "上海市", "Shanghai"),
    ("32", "江苏省", "Jiangsu"),
    ("33", "浙江省", "Zhejiang"),
    ("34", "安徽省", "Anhui"),
    ("35", "福建省", "Fujian"),
    ("36", "江西省", "Jiangxi"),
    ("37", "山东省", "Shandong"),
    ("41", "河南省", "Henan"),
    ("42", "湖北省", "Hubei"),
    ("43", "湖南省", "Hunan"),
    ("44", "广东省", "Guangdong"),
    ("45", "广西壮族自治区", "Guangxi"),
    ("46", "海南省", "Hainan"),
    ("50", "重庆市", "Chongqing"),
    ("51", "四川省", "Sichuan"),
    ("52", "贵州省", "Guizhou"),
    ("53", "云南省", "Yunnan"),
    ("54", "西藏自治区", "Tibet"),
    ("61", "陕西省", "Shaanxi"),
    ("62", "甘肃省", "Gansu"),
    ("63", "青海省", "Qinghai"),
    ("64", "宁夏回族自治区", "Ningxia"),
    ("65", "新疆维吾尔自治区", "Xinjiang"),
    ("71", "台湾省", "Taiwan"),
    ("81", "香港特别行政区", "Hong Kong"),
    ("82", "澳门特别行政区", "Macao"),
];

/// A provincial-level unit (省级行政区), by its two-digit GB/T 2260 code, e.g. `37` Shandong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct ProvinceCode(u8);

impl ProvinceCode {
    /// # Errors
    /// Anything but one of the 34 two-digit codes.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        require_digits(s, 2, IdKind::ProvinceCode, "2")?;
        PROVINCES
            .iter()
            .position(|(code, _, _)| *code == s)
            .map(|i| ProvinceCode(i as u8))
            .ok_or(IdError::new(IdKind::ProvinceCode, IdProblem::Unknown))
    }

    /// All 34 provincial-level units, in code order.
    pub fn all() -> impl Iterator<Item = ProvinceCode> {
        (0..PROVINCES.len() as u8).map(ProvinceCode)
    }

    pub fn code(self) -> &'static str {
        PROVINCES[self.0 as usize].0
    }

    pub fn name_zh(self) -> &'static str {
        PROVINCES[self.0 as usize].1
    }

    pub fn name_en(self) -> &'static str {
        PROVINCES[self.0 as usize].2
    }

    /// Whether `prefix` (two digits) is a provincial-level code.
    pub fn is_known(prefix: &str) -> bool {
        PROVINCES.iter().any(|(code, _, _)| *code == prefix)
    }
}

impl AsRef<str> for ProvinceCode {
    fn as_ref(&self) -> &str {
        self.code()
    }
}

string_id!(ProvinceCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_34_distinct_units() {
        let mut codes: Vec<_> = ProvinceCode::all().map(|p| p.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), 34);
        assert_eq!(ProvinceCode::parse("37").unwrap().name_zh(), "山东省");
    }

    #[test]
    fn unknown_and_malformed_codes_are_refused() {
        for bad in ["00", "10", "83", "99", "3", "370", "3a", ""] {
            assert!(ProvinceCode::parse(bad).is_err(), "{bad}");
        }
    }
}
