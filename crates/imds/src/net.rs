//! `imds net up` / `imds net down`: put the link-local endpoint addresses (`169.254.169.254/32`
//! and `fd00:ec2::254/128`) on this host, or take them away, so that
//! `imds serve --listen 169.254.169.254:80 --listen [fd00:ec2::254]:80` can bind them; with them
//! the container endpoint's ECS address (`169.254.170.2/32`, `--container-listen
//! 169.254.170.2:80`) and the EKS Pod Identity Agent's (`169.254.170.23/32` and
//! `fd00:ec2::23/128`, `--pod-identity-listen`), each left out on request. By default
//! they go on a dedicated dummy interface (`imds0`), made for the purpose and removed again by
//! `down`; `--interface` names another (e.g. `lo` on kernels built without dummy interfaces), from
//! which `down` removes only the two addresses. Both commands are idempotent. They talk to the
//! kernel over rtnetlink, as `ip` does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{bail, format_err};
use futures_util::TryStreamExt;
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressHeaderFlags},
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
    },
    Handle, LinkDummy, LinkUnspec,
};

/// The IPv4 endpoint address.
pub const IPV4_ENDPOINT: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The IPv6 endpoint address, `fd00:ec2::254`.
pub const IPV6_ENDPOINT: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
/// The ECS container credentials and task metadata address.
pub const CONTAINER_ENDPOINT: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// The EKS Pod Identity Agent's IPv4 address.
pub const POD_IDENTITY_IPV4: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 23);
/// The EKS Pod Identity Agent's IPv6 address, `fd00:ec2::23`.
pub const POD_IDENTITY_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);

/// Which addresses `up` puts on.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    /// The IPv6 addresses too.
    pub ipv6: bool,
    /// `169.254.170.2`.
    pub container: bool,
    /// `169.254.170.23` (and `fd00:ec2::23` with `ipv6`).
    pub pod_identity: bool,
}

impl Endpoints {
    /// Every address `up` can put on, which `down` takes away.
    pub const ALL: Endpoints = Endpoints {
        ipv6: true,
        container: true,
        pod_identity: true,
    };
}

const EPERM: i32 = 1;
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;
const EADDRNOTAVAIL: i32 = 99;

/// The errno of a netlink error, if it is one.
fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io().raw_os_error(),
        _ => None,
    }
}

fn explain(action: &str, error: rtnetlink::Error) -> anyhow::Error {
    match errno(&error) {
        Some(EPERM) => format_err!("{action}: not permitted (run as root or with CAP_NET_ADMIN)"),
        _ => format_err!("{action}: {error}"),
    }
}

async fn connect() -> anyhow::Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|error| format_err!("cannot open a netlink socket: {error}"))?;
    tokio::spawn(connection);
    Ok(handle)
}

async fn find_link(handle: &Handle, name: &str) -> anyhow::Result<Option<LinkMessage>> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(error) if errno(&error) == Some(ENODEV) => Ok(None),
        Err(error) => Err(explain(&format!("cannot look up interface {name}"), error)),
    }
}

fn is_dummy(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|attribute| {
        matches!(attribute, LinkAttribute::LinkInfo(infos)
            if infos.iter().any(|info| matches!(info, LinkInfo::Kind(InfoKind::Dummy))))
    })
}

fn endpoints(wanted: Endpoints) -> Vec<(IpAddr, u8)> {
    let mut addresses = vec![(IpAddr::V4(IPV4_ENDPOINT), 32)];
    if wanted.ipv6 {
        addresses.push((IpAddr::V6(IPV6_ENDPOINT), 128));
    }
    if wanted.container {
        addresses.push((IpAddr::V4(CONTAINER_ENDPOINT), 32));
    }
    if wanted.pod_identity {
        addresses.push((IpAddr::V4(POD_IDENTITY_IPV4), 32));
        if wanted.ipv6 {
            addresses.push((IpAddr::V6(POD_IDENTITY_IPV6), 128));
        }
    }
    addresses
}

/// Makes sure `interface` exists (creating a dummy if it does not), is up, and carries the
/// endpoint addresses.
pub async fn up(interface: &str, wanted: Endpoints) -> anyhow::Result<()> {
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
        bail!("invalid interface name {interface:?}: up to 15 characters, no '/' or spaces");
    }
    let handle = connect().await?;
    let link = match find_link(&handle, interface).await? {
        Some(link) => link,
        None => {
            match handle
                .link()
                .add(LinkDummy::new(interface).build())
                .execute()
                .await
            {
                Ok(()) => println!("{interface}: created"),
                Err(error) if errno(&error) == Some(EEXIST) => {}
                Err(error) if errno(&error) == Some(EOPNOTSUPP) => bail!(
                    "cannot create interface {interface}: this kernel has no dummy interfaces \
                     (CONFIG_DUMMY); put the addresses on an existing one, e.g. --interface lo"
                ),
                Err(error) => {
                    return Err(explain(
                        &format!("cannot create interface {interface}"),
                        error,
                    ))
                }
            }
            find_link(&handle, interface)
                .await?
                .ok_or_else(|| format_err!("interface {interface} vanished after it was created"))?
        }
    };
    let index = link.header.index;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|error| explain(&format!("cannot bring {interface} up"), error))?;
    for (address, prefix) in endpoints(wanted) {
        let mut request = handle.address().add(index, address, prefix);
        // No duplicate address detection: the address is this host's own and must be bindable
        // at once, not "tentative" for a second.
        request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        match request.execute().await {
            Ok(()) => println!("{interface}: {address}/{prefix} added"),
            Err(error) if errno(&error) == Some(EEXIST) => {
                println!("{interface}: {address}/{prefix} already there");
            }
            Err(error) => {
                return Err(explain(
                    &format!("cannot add {address}/{prefix} to {interface}"),
                    error,
                ))
            }
        }
    }
    Ok(())
}

/// Removes the endpoint addresses: the whole interface if it is a dummy, else only the
/// addresses `up` can add. Nothing to do if they are gone.
pub async fn down(interface: &str) -> anyhow::Result<()> {
    let handle = connect().await?;
    let Some(link) = find_link(&handle, interface).await? else {
        println!("{interface}: not present");
        return Ok(());
    };
    let index = link.header.index;
    if is_dummy(&link) {
        return match handle.link().del(index).execute().await {
            Ok(()) => {
                println!("{interface}: removed");
                Ok(())
            }
            Err(error) if errno(&error) == Some(ENODEV) => Ok(()),
            Err(error) => Err(explain(
                &format!("cannot remove interface {interface}"),
                error,
            )),
        };
    }
    let mut addresses = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut found = Vec::new();
    while let Some(message) = addresses
        .try_next()
        .await
        .map_err(|error| explain(&format!("cannot list the addresses of {interface}"), error))?
    {
        let matches = message.attributes.iter().any(|attribute| {
            matches!(attribute, AddressAttribute::Address(address)
                if endpoints(Endpoints::ALL).iter().any(|(endpoint, _)| endpoint == address))
        });
        if matches {
            found.push(message);
        }
    }
    if found.is_empty() {
        println!("{interface}: no endpoint addresses");
    }
    for message in found {
        match handle.address().del(message).execute().await {
            Ok(()) => println!("{interface}: endpoint address removed"),
            Err(error) if errno(&error) == Some(EADDRNOTAVAIL) => {}
            Err(error) => {
                return Err(explain(
                    &format!("cannot remove an address from {interface}"),
                    error,
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_addresses() {
        assert_eq!(IPV4_ENDPOINT.to_string(), "169.254.169.254");
        assert_eq!(IPV6_ENDPOINT.to_string(), "fd00:ec2::254");
        assert_eq!(POD_IDENTITY_IPV6.to_string(), "fd00:ec2::23");
        let only_imds = Endpoints {
            ipv6: false,
            container: false,
            pod_identity: false,
        };
        assert_eq!(endpoints(only_imds).len(), 1);
        assert_eq!(endpoints(Endpoints::ALL).len(), 5);
        let no_ipv6 = Endpoints {
            ipv6: false,
            ..Endpoints::ALL
        };
        assert_eq!(
            endpoints(no_ipv6),
            [
                (IpAddr::V4(IPV4_ENDPOINT), 32),
                (IpAddr::V4(CONTAINER_ENDPOINT), 32),
                (IpAddr::V4(POD_IDENTITY_IPV4), 32)
            ]
        );
    }
}
