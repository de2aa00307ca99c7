use super::*;

fn ca() -> Ca {
    Ca::create("Test CA", 30).unwrap()
}

#[test]
fn an_issued_province_certificate_reads_back_with_its_role() {
    let ca = ca();
    let p = ProvinceCode::parse("37").unwrap();
    let issued = ca.issue(&Profile::new(Role::Province(p), 365)).unwrap();
    let info = CertInfo::parse_pem(issued.cert_pem.as_bytes()).unwrap();
    assert_eq!(info.role, Role::Province(p));
    assert_eq!(info.role.party(), Some(Party::Province(p)));
    assert!(info.subject.contains("CN=prov-37"), "{}", info.subject);
    assert_eq!(info.serial.len(), 32);
    assert!(matches!(info.validity_at(Utc::now()), Validity::Valid { days_left: 364 | 365 }));
    ca.verify(&info).unwrap();
}

#[test]
fn a_certificate_of_another_ca_does_not_verify() {
    let other = ca().issue(&Profile::new(Role::Hub, 10)).unwrap();
    assert!(matches!(ca().verify(&other.info), Err(CertError::WrongIssuer)));
}

#[test]
fn validity_tells_expired_not_yet_valid_and_expiring_soon() {
    let ca = ca();
    let now = Utc::now();
    let mut profile = Profile::new(Role::Hub, 30);
    assert!(matches!(ca.issue(&profile).unwrap().info.validity_at(now), Validity::ExpiresSoon { .. }));
    profile.not_before = now - Duration::days(20);
    profile.not_after = now - Duration::days(1);
    assert_eq!(ca.issue(&profile).unwrap().info.validity_at(now), Validity::Expired);
    profile.not_before = now + Duration::days(1);
    profile.not_after = now + Duration::days(100);
    assert_eq!(ca.issue(&profile).unwrap().info.validity_at(now), Validity::NotYetValid);
}

#[test]
fn roles_and_common_names_must_agree() {
    assert!(Role::from_subject("province", "prov-99").is_err());
    assert!(Role::from_subject("province", "hub").is_err());
    assert!(Role::from_subject("hub", "prov-37").is_err());
    assert!(Role::from_subject("operator", "op-").is_err());
    assert!(Role::from_subject("admin", "op-x").is_err());
    assert_eq!(Role::from_subject("operator", "op-zhang").unwrap(), Role::Operator("zhang".into()));
    assert_eq!(Role::from_subject("national-office", "moe-arbiter").unwrap(), Role::National("arbiter".into()));
}

#[test]
fn keys_round_trip_through_files() {
    let dir = std::env::temp_dir().join(format!("certs-test-{}", std::process::id()));
    let ca = ca();
    ca.write(&dir).unwrap();
    let loaded = Ca::load(&dir).unwrap();
    let issued = loaded.issue(&Profile::new(Role::Server("localhost".into()), 5)).unwrap();
    ca.verify(&issued.info).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(matches!(ca.write(&dir), Err(CertError::Exists(_))), "a CA is never overwritten");
    std::fs::remove_dir_all(dir).unwrap();
}

fn basic_constraints(der: &[u8]) -> Option<bool> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.basic_constraints().unwrap().map(|bc| bc.value.ca)
}

#[test]
fn every_leaf_is_not_a_ca_and_lives_at_most_825_days() {
    let ca = ca();
    let issued = ca.issue(&Profile::new(Role::Hub, MAX_LEAF_DAYS)).unwrap();
    assert_eq!(basic_constraints(&issued.info.der), Some(false), "CA:FALSE present");
    assert!(matches!(ca.issue(&Profile::new(Role::Hub, MAX_LEAF_DAYS + 1)), Err(CertError::Validity(_))));
    assert!(matches!(ca.issue(&Profile::new(Role::Hub, 5000)), Err(CertError::Validity(_))));
}

#[test]
fn a_request_made_beside_its_key_is_signed_for_its_own_identity_only() {
    let ca = ca();
    let p = ProvinceCode::parse("37").unwrap();
    let made = KeyRequest::generate(&Role::Province(p), &[]).unwrap();
    let request = Request::parse_pem(made.csr_pem.as_bytes()).unwrap();
    assert_eq!(request.role, Role::Province(p));
    let (pem, info) = ca.sign_request(&request, &Profile::new(Role::Province(p), 365)).unwrap();
    ca.verify(&info).unwrap();
    assert_eq!(basic_constraints(&info.der), Some(false));
    // The certificate carries the requester's key: it pairs with the key that never left.
    let key = KeyPair::from_pem(&made.key_pem).unwrap();
    let (_, cert) = X509Certificate::from_der(&info.der).unwrap();
    assert_eq!(cert.public_key().subject_public_key.data.as_ref(), key.public_key_raw());
    assert!(pem.contains("BEGIN CERTIFICATE"));
    // A request is signed only for the identity it names.
    let other = ProvinceCode::parse("44").unwrap();
    assert!(matches!(ca.sign_request(&request, &Profile::new(Role::Province(other), 365)), Err(CertError::Request(_))));
    assert!(matches!(ca.sign_request(&request, &Profile::new(Role::Hub, 365)), Err(CertError::Request(_))));
    // A tampered request does not verify.
    let mut der = x509_parser::pem::parse_x509_pem(made.csr_pem.as_bytes()).unwrap().1.contents;
    let at = der.len() - 3;
    der[at] ^= 0x01;
    assert!(Request::parse_pem(pem_block("CERTIFICATE REQUEST", &der).as_bytes()).is_err());
}

#[test]
fn a_server_request_keeps_its_alternative_names() {
    let ca = ca();
    let role = Role::Server("broker.example".into());
    let alts = vec!["broker.example".to_owned(), "127.0.0.1".to_owned()];
    let made = KeyRequest::generate(&role, &alts).unwrap();
    let request = Request::parse_pem(made.csr_pem.as_bytes()).unwrap();
    assert_eq!(request.alt_names, alts);
    let mut profile = Profile::new(role, 90);
    profile.alt_names = request.alt_names.clone();
    ca.sign_request(&request, &profile).unwrap();
}
