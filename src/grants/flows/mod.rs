//! One admission step per flow: it checks the flow's own request and credential and says who
//! asks for what. What they get is decided in `issue`, the same for every flow.

pub(crate) mod certificate;
pub(crate) mod client_credentials;
pub(crate) mod device;
pub(crate) mod jwt;
pub(crate) mod password;
pub(crate) mod refresh;
