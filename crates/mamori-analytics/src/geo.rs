//! GeoIP: country, coordinates and ASN of an address from MaxMind databases (GeoIP2/GeoLite2
//! City or Country, and ASN), read from files given by path.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{geoip2, Reader};

use crate::{Error, Result};

/// Where an address is.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub country: Option<String>,
    pub city: Option<String>,
    /// (latitude, longitude)
    pub coords: Option<(f64, f64)>,
    pub asn: Option<u32>,
    pub as_org: Option<String>,
}

/// Open MaxMind databases.
#[derive(Default)]
pub struct GeoIp {
    city: Option<Reader<Vec<u8>>>,
    asn: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("city", &self.city.is_some())
            .field("asn", &self.asn.is_some())
            .finish()
    }
}

fn open(p: &Path) -> Result<Reader<Vec<u8>>> {
    Reader::open_readfile(p).map_err(|e| Error::Load {
        path: p.display().to_string(),
        message: e.to_string(),
    })
}

impl GeoIp {
    /// Opens a City (or Country) database and/or an ASN database.
    pub fn open(city: Option<&Path>, asn: Option<&Path>) -> Result<GeoIp> {
        Ok(GeoIp {
            city: city.map(open).transpose()?,
            asn: asn.map(open).transpose()?,
        })
    }

    /// The place of an address; `None` when it is not an address or no database knows it.
    pub fn locate(&self, addr: &str) -> Option<Place> {
        let ip: IpAddr = addr.trim().parse().ok()?;
        let mut place = Place {
            country: None,
            city: None,
            coords: None,
            asn: None,
            as_org: None,
        };
        if let Some(r) = &self.city {
            if let Ok(Some(c)) = r.lookup(ip).and_then(|l| l.decode::<geoip2::City>()) {
                place.country = c.country.iso_code.map(str::to_owned);
                place.city = c.city.names.english.map(str::to_owned);
                if let (Some(la), Some(lo)) = (c.location.latitude, c.location.longitude) {
                    place.coords = Some((la, lo));
                }
            }
        }
        if let Some(r) = &self.asn {
            if let Ok(Some(a)) = r.lookup(ip).and_then(|l| l.decode::<geoip2::Asn>()) {
                place.asn = a.autonomous_system_number;
                place.as_org = a.autonomous_system_organization.map(str::to_owned);
            }
        }
        (place.country.is_some() || place.asn.is_some()).then_some(place)
    }
}

/// Great-circle distance in kilometres.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}
