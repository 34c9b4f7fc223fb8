//! ACL bindings and filters in our own types, with Kafka's matching rules as pure functions.

use std::fmt;

/// The kind of resource an ACL binding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// A transactional id (producers with transactions).
    TransactionalId,
    /// The cluster itself; the resource name is always [`CLUSTER_RESOURCE_NAME`].
    Cluster,
}

/// The only resource name Kafka accepts for [`AclResourceType::Cluster`].
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";

/// How an ACL binding's resource name is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPatternType {
    /// The name is the resource's full name (or `*` for every resource of the type).
    Literal,
    /// The name is a prefix of the resources' names.
    Prefixed,
}

/// The operation an ACL binding allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclOperation {
    /// Every operation.
    All,
    /// Read (consume; join a group).
    Read,
    /// Write (produce).
    Write,
    /// Create.
    Create,
    /// Delete.
    Delete,
    /// Alter.
    Alter,
    /// Describe (metadata, offsets); implied by Read, Write, Delete and Alter.
    Describe,
    /// Cluster actions (inter-broker).
    ClusterAction,
    /// Describe configs; implied by AlterConfigs.
    DescribeConfigs,
    /// Alter configs.
    AlterConfigs,
    /// Idempotent produce.
    IdempotentWrite,
}

/// Whether an ACL binding allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPermission {
    /// Allow the operation.
    Allow,
    /// Deny the operation; a matching deny wins over any allow.
    Deny,
}

/// One Kafka ACL: `principal` may (or may not) do `operation` on the resources named by
/// `resource_type`, `pattern_type` and `resource_name`, from `host`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// The kind of resource.
    pub resource_type: AclResourceType,
    /// How `resource_name` matches resources.
    pub pattern_type: AclPatternType,
    /// The resource name, prefix, or `*`.
    pub resource_name: String,
    /// The principal, `User:<name>` (see [`user_principal`]).
    pub principal: String,
    /// The client host, `*` for any.
    pub host: String,
    /// The operation.
    pub operation: AclOperation,
    /// Allow or deny.
    pub permission: AclPermission,
}

/// The Kafka principal of a SCRAM user: `User:<name>`.
pub fn user_principal(user: &str) -> String {
    format!("User:{user}")
}

/// The host value that matches every client host.
pub const ANY_HOST: &str = "*";

impl AclBinding {
    /// An `Allow` binding from any host: the only kind the operator makes.
    pub fn allow(
        resource_type: AclResourceType,
        pattern_type: AclPatternType,
        resource_name: impl Into<String>,
        principal: impl Into<String>,
        operation: AclOperation,
    ) -> Self {
        Self {
            resource_type,
            pattern_type,
            resource_name: resource_name.into(),
            principal: principal.into(),
            host: ANY_HOST.to_owned(),
            operation,
            permission: AclPermission::Allow,
        }
    }

    /// One `Allow` binding per operation on the same resource for the same principal.
    pub fn allow_each(
        resource_type: AclResourceType,
        pattern_type: AclPatternType,
        resource_name: &str,
        principal: &str,
        operations: &[AclOperation],
    ) -> Vec<Self> {
        operations
            .iter()
            .map(|&operation| {
                Self::allow(
                    resource_type,
                    pattern_type,
                    resource_name,
                    principal,
                    operation,
                )
            })
            .collect()
    }
}

impl fmt::Display for AclBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ACL {:?} {} {:?} on {:?}:{:?}:{} from {}",
            self.permission,
            self.principal,
            self.operation,
            self.resource_type,
            self.pattern_type,
            self.resource_name,
            self.host
        )
    }
}

/// Selects ACL bindings for describe and delete; `None` in a field matches anything, as
/// Kafka's `ANY` and null do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AclBindingFilter {
    /// The kind of resource, or any.
    pub resource_type: Option<AclResourceType>,
    /// The pattern type, or any.
    pub pattern_type: Option<AclPatternType>,
    /// The exact resource name (or prefix, for prefixed bindings), or any.
    pub resource_name: Option<String>,
    /// The exact principal, or any.
    pub principal: Option<String>,
    /// The exact host, or any.
    pub host: Option<String>,
    /// The operation, or any.
    pub operation: Option<AclOperation>,
    /// The permission, or any.
    pub permission: Option<AclPermission>,
}

impl AclBindingFilter {
    /// Matches every binding.
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches exactly this binding and nothing else: deleting with it removes only what one grant made.
    pub fn exact(binding: &AclBinding) -> Self {
        Self {
            resource_type: Some(binding.resource_type),
            pattern_type: Some(binding.pattern_type),
            resource_name: Some(binding.resource_name.clone()),
            principal: Some(binding.principal.clone()),
            host: Some(binding.host.clone()),
            operation: Some(binding.operation),
            permission: Some(binding.permission),
        }
    }

    /// Matches every binding of one principal.
    pub fn for_principal(principal: impl Into<String>) -> Self {
        Self {
            principal: Some(principal.into()),
            ..Self::default()
        }
    }

    /// Matches every binding on one resource (as stored: same type, pattern type and name).
    pub fn for_resource(
        resource_type: AclResourceType,
        pattern_type: AclPatternType,
        resource_name: impl Into<String>,
    ) -> Self {
        Self {
            resource_type: Some(resource_type),
            pattern_type: Some(pattern_type),
            resource_name: Some(resource_name.into()),
            ..Self::default()
        }
    }

    /// The bindings the filter selects (see [`AclBindingFilter::matches`]), as `DescribeAcls`
    /// answers from a set of bindings.
    pub fn select<'a>(
        &self,
        bindings: impl IntoIterator<Item = &'a AclBinding>,
    ) -> Vec<AclBinding> {
        bindings
            .into_iter()
            .filter(|binding| self.matches(binding))
            .cloned()
            .collect()
    }

    /// Whether the binding is selected, with Kafka's rules for `ANY` filters: each field that
    /// is set must equal the binding's.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        fn field<T: PartialEq + ?Sized>(filter: Option<&T>, value: &T) -> bool {
            filter.is_none_or(|wanted| wanted == value)
        }
        field(self.resource_type.as_ref(), &binding.resource_type)
            && field(self.pattern_type.as_ref(), &binding.pattern_type)
            && field(
                self.resource_name.as_deref(),
                binding.resource_name.as_str(),
            )
            && field(self.principal.as_deref(), binding.principal.as_str())
            && field(self.host.as_deref(), binding.host.as_str())
            && field(self.operation.as_ref(), &binding.operation)
            && field(self.permission.as_ref(), &binding.permission)
    }
}

impl fmt::Display for AclBindingFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn any<T: fmt::Debug>(value: &Option<T>) -> String {
            value
                .as_ref()
                .map_or_else(|| "any".to_owned(), |v| format!("{v:?}"))
        }
        fn any_str(value: &Option<String>) -> &str {
            value.as_deref().unwrap_or("any")
        }
        write!(
            f,
            "ACL filter {} {} {} on {}:{}:{} from {}",
            any(&self.permission),
            any_str(&self.principal),
            any(&self.operation),
            any(&self.resource_type),
            any(&self.pattern_type),
            any_str(&self.resource_name),
            any_str(&self.host)
        )
    }
}

/// A request to authorize: may `principal` do `operation` on the named resource?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest<'a> {
    /// `User:<name>`.
    pub principal: &'a str,
    /// The client's host.
    pub host: &'a str,
    /// The kind of resource.
    pub resource_type: AclResourceType,
    /// The resource's full name.
    pub resource_name: &'a str,
    /// The operation.
    pub operation: AclOperation,
}

/// Whether Kafka's `StandardAuthorizer` would allow the request under these bindings (for a
/// principal that is not a super user): a matching deny wins, otherwise a matching allow is
/// needed. Describe is implied by Read, Write, Delete and Alter; DescribeConfigs by
/// AlterConfigs; `All` covers every operation.
pub fn is_authorized<'a>(
    bindings: impl IntoIterator<Item = &'a AclBinding>,
    request: &AuthorizationRequest<'_>,
) -> bool {
    let mut allowed = false;
    for binding in bindings {
        if !binding_applies(binding, request) {
            continue;
        }
        match binding.permission {
            AclPermission::Deny
                if binding.operation == AclOperation::All
                    || binding.operation == request.operation =>
            {
                return false;
            }
            AclPermission::Deny => {}
            AclPermission::Allow => {
                allowed |= operation_grants(binding.operation, request.operation);
            }
        }
    }
    allowed
}

fn binding_applies(binding: &AclBinding, request: &AuthorizationRequest<'_>) -> bool {
    let resource_matches = binding.resource_type == request.resource_type
        && match binding.pattern_type {
            AclPatternType::Literal => {
                binding.resource_name == "*" || binding.resource_name == request.resource_name
            }
            AclPatternType::Prefixed => request.resource_name.starts_with(&binding.resource_name),
        };
    let principal_matches = binding.principal == request.principal || binding.principal == "User:*";
    let host_matches = binding.host == ANY_HOST || binding.host == request.host;
    resource_matches && principal_matches && host_matches
}

/// Whether an allow on `granted` permits `requested`, including Kafka's implied operations.
fn operation_grants(granted: AclOperation, requested: AclOperation) -> bool {
    use AclOperation::*;
    granted == All
        || granted == requested
        || (requested == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (requested == DescribeConfigs && granted == AlterConfigs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic_binding(name: &str, principal: &str, operation: AclOperation) -> AclBinding {
        AclBinding::allow(
            AclResourceType::Topic,
            AclPatternType::Literal,
            name,
            principal,
            operation,
        )
    }

    #[test]
    fn allow_makes_an_allow_binding_from_any_host() {
        let binding = topic_binding(
            "payments.orders.events",
            &user_principal("payments"),
            AclOperation::Write,
        );
        assert_eq!(binding.principal, "User:payments");
        assert_eq!(binding.host, "*");
        assert_eq!(binding.permission, AclPermission::Allow);
        assert_eq!(binding.resource_name, "payments.orders.events");
    }

    #[test]
    fn allow_each_makes_one_binding_per_operation() {
        let bindings = AclBinding::allow_each(
            AclResourceType::Topic,
            AclPatternType::Literal,
            "t",
            "User:a",
            &[
                AclOperation::Write,
                AclOperation::Describe,
                AclOperation::IdempotentWrite,
            ],
        );
        let operations: Vec<_> = bindings.iter().map(|b| b.operation).collect();
        assert_eq!(
            operations,
            [
                AclOperation::Write,
                AclOperation::Describe,
                AclOperation::IdempotentWrite
            ]
        );
        assert!(
            bindings
                .iter()
                .all(|b| b.resource_name == "t" && b.principal == "User:a")
        );
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        let binding = topic_binding("t", "User:a", AclOperation::Read);
        assert!(AclBindingFilter::any().matches(&binding));
    }

    #[test]
    fn an_exact_filter_matches_only_its_binding() {
        let binding = topic_binding("t", "User:a", AclOperation::Read);
        let filter = AclBindingFilter::exact(&binding);
        assert!(filter.matches(&binding));
        for other in [
            topic_binding("t", "User:a", AclOperation::Write),
            topic_binding("t", "User:b", AclOperation::Read),
            topic_binding("t2", "User:a", AclOperation::Read),
            AclBinding {
                pattern_type: AclPatternType::Prefixed,
                ..binding.clone()
            },
            AclBinding {
                resource_type: AclResourceType::Group,
                ..binding.clone()
            },
            AclBinding {
                host: "10.0.0.1".into(),
                ..binding.clone()
            },
            AclBinding {
                permission: AclPermission::Deny,
                ..binding.clone()
            },
        ] {
            assert!(!filter.matches(&other), "{other} must not match {filter}");
        }
    }

    #[test]
    fn filter_names_match_exactly_not_as_patterns() {
        // Kafka's filters with a pattern type of LITERAL or PREFIXED compare names verbatim;
        // a prefixed binding `pay` is not selected by the name `payments`.
        let prefixed = AclBinding::allow(
            AclResourceType::Group,
            AclPatternType::Prefixed,
            "pay",
            "User:a",
            AclOperation::Read,
        );
        let filter = AclBindingFilter::for_resource(
            AclResourceType::Group,
            AclPatternType::Prefixed,
            "payments",
        );
        assert!(!filter.matches(&prefixed));
        let filter =
            AclBindingFilter::for_resource(AclResourceType::Group, AclPatternType::Prefixed, "pay");
        assert!(filter.matches(&prefixed));
    }

    #[test]
    fn a_principal_filter_selects_all_bindings_of_that_principal() {
        let filter = AclBindingFilter::for_principal(user_principal("marketing"));
        assert!(filter.matches(&topic_binding("x", "User:marketing", AclOperation::Read)));
        assert!(!filter.matches(&topic_binding("x", "User:marketing-eu", AclOperation::Read)));
    }

    fn request<'a>(
        principal: &'a str,
        topic: &'a str,
        operation: AclOperation,
    ) -> AuthorizationRequest<'a> {
        AuthorizationRequest {
            principal,
            host: "127.0.0.1",
            resource_type: AclResourceType::Topic,
            resource_name: topic,
            operation,
        }
    }

    #[test]
    fn without_bindings_nothing_is_authorized() {
        assert!(!is_authorized(
            &[],
            &request("User:a", "t", AclOperation::Write)
        ));
    }

    #[test]
    fn write_implies_describe_but_not_read() {
        let bindings = [topic_binding("t", "User:a", AclOperation::Write)];
        assert!(is_authorized(
            &bindings,
            &request("User:a", "t", AclOperation::Write)
        ));
        assert!(is_authorized(
            &bindings,
            &request("User:a", "t", AclOperation::Describe)
        ));
        assert!(!is_authorized(
            &bindings,
            &request("User:a", "t", AclOperation::Read)
        ));
        assert!(!is_authorized(
            &bindings,
            &request("User:b", "t", AclOperation::Write)
        ));
        assert!(!is_authorized(
            &bindings,
            &request("User:a", "t2", AclOperation::Write)
        ));
    }

    #[test]
    fn prefixed_and_wildcard_bindings_match_by_pattern() {
        let bindings = [
            AclBinding::allow(
                AclResourceType::Group,
                AclPatternType::Prefixed,
                "marketing.",
                "User:m",
                AclOperation::Read,
            ),
            AclBinding::allow(
                AclResourceType::Topic,
                AclPatternType::Literal,
                "*",
                "User:w",
                AclOperation::Describe,
            ),
        ];
        let group = |name| AuthorizationRequest {
            principal: "User:m",
            host: "h",
            resource_type: AclResourceType::Group,
            resource_name: name,
            operation: AclOperation::Read,
        };
        assert!(is_authorized(&bindings, &group("marketing.campaigns")));
        assert!(!is_authorized(&bindings, &group("marketingcampaigns")));
        assert!(is_authorized(
            &bindings,
            &request("User:w", "anything", AclOperation::Describe)
        ));
        assert!(!is_authorized(
            &bindings,
            &request("User:w", "anything", AclOperation::Read)
        ));
    }

    #[test]
    fn a_matching_deny_wins_over_an_allow() {
        let allow = topic_binding("t", "User:a", AclOperation::All);
        let deny = AclBinding {
            permission: AclPermission::Deny,
            operation: AclOperation::Write,
            ..allow.clone()
        };
        let bindings = [allow, deny];
        assert!(!is_authorized(
            &bindings,
            &request("User:a", "t", AclOperation::Write)
        ));
        assert!(is_authorized(
            &bindings,
            &request("User:a", "t", AclOperation::Read)
        ));
    }

    #[test]
    fn bindings_display_with_all_their_parts() {
        let text = topic_binding("t", "User:a", AclOperation::Read).to_string();
        assert_eq!(text, "ACL Allow User:a Read on Topic:Literal:t from *");
        let filter = AclBindingFilter::for_principal("User:a").to_string();
        assert_eq!(filter, "ACL filter any User:a any on any:any:any from any");
    }
}
