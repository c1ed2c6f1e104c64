//! A containerd connection scoped to one namespace: typed service clients and the request
//! metadata containerd reads (`containerd-namespace`, `containerd-lease`).

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    events_client::EventsClient, images_client::ImagesClient,
    introspection_client::IntrospectionClient, leases_client::LeasesClient,
    namespaces_client::NamespacesClient, snapshots::snapshots_client::SnapshotsClient,
    tasks_client::TasksClient, version_client::VersionClient,
};
use crimux_core::{Error, Result};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

/// The largest message we accept from containerd (manifests and configs are read whole).
const MAX_MESSAGE: usize = 64 << 20;

const NAMESPACE_HEADER: &str = "containerd-namespace";
const LEASE_HEADER: &str = "containerd-lease";

/// One containerd daemon, one namespace. Cheap to clone: the channel is shared.
#[derive(Clone)]
pub struct Daemon {
    channel: Channel,
    namespace: String,
    /// `namespace` as the header value every request carries.
    header: MetadataValue<tonic::metadata::Ascii>,
}

impl Daemon {
    pub fn new(channel: Channel, namespace: &str) -> Result<Daemon> {
        let header = namespace.parse().map_err(|_| {
            Error::InvalidArgument(format!("containerd namespace {namespace:?} is not ASCII"))
        })?;
        Ok(Daemon {
            channel,
            namespace: namespace.to_string(),
            header,
        })
    }

    /// The containerd namespace every request is in (and every event we want comes from).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request in our namespace, and in `lease` when given, so that what it creates is
    /// held by the lease until the lease goes away.
    pub fn request<T>(&self, message: T, lease: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(NAMESPACE_HEADER, self.header.clone());
        if let Some(lease) = lease.and_then(|l| l.parse().ok()) {
            metadata.insert(LEASE_HEADER, lease);
        }
        request
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }

    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }

    pub fn namespaces(&self) -> NamespacesClient<Channel> {
        NamespacesClient::new(self.channel.clone())
    }

    pub fn introspection(&self) -> IntrospectionClient<Channel> {
        IntrospectionClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn version(&self) -> VersionClient<Channel> {
        VersionClient::new(self.channel.clone())
    }
}

/// Whether a status says the thing asked for is not there.
pub fn is_not_found(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::NotFound
}

pub fn is_already_exists(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::AlreadyExists
}

/// Rebuilds an equivalent error, for results shared between waiters.
pub fn clone_error(e: &Error) -> Error {
    match e {
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
        Error::Unauthenticated(m) => Error::Unauthenticated(m.clone()),
        Error::PermissionDenied(m) => Error::PermissionDenied(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::DeadlineExceeded(m) => Error::DeadlineExceeded(m.clone()),
        Error::Unimplemented(m) => Error::Unimplemented(m.clone()),
        Error::Internal(m) => Error::Internal(m.clone()),
        Error::OsNotSupported(refusal) => Error::OsNotSupported(refusal.clone()),
        Error::Backend { context, status } => Error::Backend {
            context: context.clone(),
            status: tonic::Status::new(status.code(), status.message()),
        },
    }
}
