//! rtnetlink requests made inside a chosen netns.
//!
//! A netlink socket stays bound to the netns it was created in, so
//! [`open_sockets`] creates one socket per netns on dedicated threads. Each
//! enters its share of the namespaces with setns(2) and returns to its own
//! netns at the end.
//! The sockets can then be used from any thread. Requests are synchronous:
//! a snapshot sends a few small requests per netns, and a blocking
//! send/recv pair is the fastest way to do that.

mod links;
mod nsid;
mod socket;

pub use links::{Link, dump_links, get_link_in_nsid};
pub use nsid::{dump_nsids, nsid_of};
pub use socket::{NetlinkError, RouteSocket, open_sockets};
