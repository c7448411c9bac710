//! `[roles]` in `policy.toml`: which tables and columns play the parts the engine knows
//! besides the rules — service records and communities for the reports, the columns of the
//! subject tables reports show, and the waivers table. Every name defaults to data contract
//! v1's, so a set that keeps those names writes nothing; a set whose data names them
//! otherwise renames them here, with no change to Rust code.
//!
//! Each role is declared once by `roles!`: the `…Def` type parses the file (each name
//! optional, with its span for errors) and the resolved type holds every name.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// Declares a role: its file type (`$def`, optional spanned names), its resolved type
/// (`$name`, every name) and the contract v1 defaults.
macro_rules! roles {
    ($(
        $(#[$m:meta])*
        $name:ident / $def:ident {
            $( $(#[$fm:meta])* $field:ident = $default:literal ),* $(,)?
        }
    )*) => {$(
        $(#[$m])*
        #[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $def {
            $(
                $(#[$fm])*
                #[doc = concat!("Default `", $default, "`.")]
                #[schemars(with = "Option<String>")]
                pub $field: Option<Spanned<String>>,
            )*
        }

        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fm])* pub $field: String, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default.to_string(), )* }
            }
        }

        impl $def {
            /// The names, each as written or its default.
            pub fn resolve(&self) -> $name {
                $name {
                    $( $field: self.$field.as_ref().map_or_else(
                        || $default.to_string(),
                        |s| s.get_ref().clone(),
                    ), )*
                }
            }

            /// The names written in the file: (field, name, where).
            pub fn written(&self) -> Vec<(&'static str, &Spanned<String>)> {
                let mut out = Vec::new();
                $( if let Some(s) = &self.$field { out.push((stringify!($field), s)); } )*
                out
            }
        }
    )*};
}

roles! {
    /// `[roles.services]`: service records, whose verified hours member and community reports
    /// chart.
    ServicesRole / ServicesRoleDef {
        /// The table.
        table = "services",
        /// Its column referencing the member who served.
        member = "member_id",
        /// Its id column of the community served.
        community = "community_id",
        /// Its date-time column of the start.
        start = "start",
        /// Its date-time column of the end.
        end = "end",
        /// Its bool column: the community confirmed the service.
        verified = "verified",
        /// Its column of the service's category (charted by community).
        category = "category",
    }

    /// `[roles.communities]`: the communities, one report each.
    CommunitiesRole / CommunitiesRoleDef {
        /// The table (its key is the community id).
        table = "communities",
        /// Its column of the community's name.
        name = "name",
        /// Its column of the district.
        district = "district",
    }

    /// `[roles.members]`: columns of the member subject's table that reports show.
    MembersRole / MembersRoleDef {
        /// The id column of the community the member lives in.
        residence = "residence_community_id",
        /// The employment status column (shown with its first alias).
        employment = "employment",
    }

    /// `[roles.organizations]`: columns of the organization subject's table that reports use.
    OrganizationsRole / OrganizationsRoleDef {
        /// The id column of the organization's contact community.
        community = "community_id",
        /// The column of the organization's kind.
        kind = "kind",
        /// The kind (a value of `kind`) of the branches that get branch reports.
        branch = "unit_branch",
    }

    /// `[roles.waivers]`: approved exemptions (optional table).
    WaiversRole / WaiversRoleDef {
        /// The table.
        table = "waivers",
        /// Its column of the member or organization exempted.
        subject = "subject_id",
        /// Its column of the directive.
        directive = "directive",
        /// Its column of the one rule (empty: all the directive's rules).
        rule = "rule",
        /// Its column of the reason.
        reason = "reason",
        /// Its column of who approved it.
        approved_by = "approved_by",
        /// Its date column of the first day.
        valid_from = "valid_from",
        /// Its date column of the last day (empty: open-ended).
        valid_until = "valid_until",
    }
}

/// `[roles]`: the tables and columns the engine reads besides the rules' own.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolesDef {
    /// Service records.
    #[serde(default)]
    pub services: ServicesRoleDef,
    /// Communities.
    #[serde(default)]
    pub communities: CommunitiesRoleDef,
    /// Columns of the member subject's table.
    #[serde(default)]
    pub members: MembersRoleDef,
    /// Columns of the organization subject's table.
    #[serde(default)]
    pub organizations: OrganizationsRoleDef,
    /// Approved exemptions.
    #[serde(default)]
    pub waivers: WaiversRoleDef,
}

/// The resolved `[roles]`: every name, written or default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// Service records.
    pub services: ServicesRole,
    /// Communities.
    pub communities: CommunitiesRole,
    /// Columns of the member subject's table.
    pub members: MembersRole,
    /// Columns of the organization subject's table.
    pub organizations: OrganizationsRole,
    /// Approved exemptions.
    pub waivers: WaiversRole,
}

impl RolesDef {
    /// Every name, written or default.
    pub fn resolve(&self) -> Roles {
        Roles {
            services: self.services.resolve(),
            communities: self.communities.resolve(),
            members: self.members.resolve(),
            organizations: self.organizations.resolve(),
            waivers: self.waivers.resolve(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract_names_and_written_names_win() {
        let def: RolesDef = toml::from_str(
            "[services]\ntable = \"服务记录\"\nverified = \"checked\"\n[organizations]\nbranch = \"支部\"",
        )
        .unwrap();
        let r = def.resolve();
        assert_eq!(r.services.table, "服务记录");
        assert_eq!(r.services.verified, "checked");
        assert_eq!(r.services.start, "start");
        assert_eq!(r.organizations.branch, "支部");
        assert_eq!(r.waivers, WaiversRole::default());
        let written: Vec<&str> = def.services.written().iter().map(|w| w.0).collect();
        assert_eq!(written, ["table", "verified"]);
        assert!(toml::from_str::<RolesDef>("[services]\ntabel = \"x\"").is_err());
    }
}
