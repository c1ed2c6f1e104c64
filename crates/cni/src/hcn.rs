//! The Host Compute Network calls behind Windows pod namespaces (`computenetwork.dll`):
//! create, open (to check one exists) and delete an HCN namespace. Windows only.
//!
//! Every call can return an error record (a JSON or text string allocated with the COM
//! allocator) even when the HRESULT says success; as hcsshim does, a non-empty record counts
//! as a failure, and every returned string is freed with `CoTaskMemFree`.

use std::ffi::c_void;

use crimux_core::Result;
use windows_sys::core::{GUID, HRESULT, PWSTR};
use windows_sys::Win32::System::Com::CoTaskMemFree;
use windows_sys::Win32::System::HostComputeNetwork::{
    HcnCloseNamespace, HcnCreateNamespace, HcnDeleteNamespace, HcnOpenNamespace,
    HcnQueryNamespaceProperties,
};

use crate::netns_windows::{hcn_error, is_not_found, namespace_id_from_properties, Guid};

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn to_guid(g: &Guid) -> GUID {
    GUID {
        data1: g.data1,
        data2: g.data2,
        data3: g.data3,
        data4: g.data4,
    }
}

/// Takes ownership of a string HCN returned: copies it out and frees it.
fn take_string(p: PWSTR) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0usize;
    // SAFETY: HCN returns NUL-terminated UTF-16 strings; we read up to the terminator.
    unsafe {
        while *p.add(len) != 0 {
            len += 1;
        }
    }
    // SAFETY: `len` u16s starting at `p` were just checked to be readable.
    let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) });
    // SAFETY: the string was allocated by HCN with the COM task allocator.
    unsafe { CoTaskMemFree(p as *const c_void) };
    s
}

/// Turns an HCN result into crimux's: failed HRESULT or non-empty error record.
fn check(call: &str, hr: HRESULT, record: PWSTR) -> Result<()> {
    let record = take_string(record);
    if hr < 0 || !record.is_empty() {
        return Err(hcn_error(call, hr, &record));
    }
    Ok(())
}

/// An open namespace handle, closed on drop.
struct Handle(*mut c_void);

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle came from HcnCreateNamespace/HcnOpenNamespace and is
            // closed once.
            let hr = unsafe { HcnCloseNamespace(self.0) };
            if hr < 0 {
                tracing::warn!(
                    hresult = format!("{:#010x}", hr as u32),
                    "HcnCloseNamespace failed"
                );
            }
        }
    }
}

/// Creates a namespace from `settings` (HCN schema JSON) and returns the id HCN gave it.
pub(crate) fn create_namespace(settings: &str) -> Result<Guid> {
    let settings = wide(settings);
    // A nil id lets HCN choose one, as hcsshim does; it is read back from the properties.
    let id = to_guid(&Guid::default());
    let mut handle: *mut c_void = std::ptr::null_mut();
    let mut record: PWSTR = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `settings` is NUL-terminated.
    let hr = unsafe { HcnCreateNamespace(&id, settings.as_ptr(), &mut handle, &mut record) };
    let handle = Handle(handle);
    check("HcnCreateNamespace", hr, record)?;

    let query = wide(&crate::netns_windows::namespace_query());
    let mut props: PWSTR = std::ptr::null_mut();
    let mut record: PWSTR = std::ptr::null_mut();
    // SAFETY: `handle` is open; the out-pointers are valid; `query` is NUL-terminated.
    let hr =
        unsafe { HcnQueryNamespaceProperties(handle.0, query.as_ptr(), &mut props, &mut record) };
    let props = take_string(props);
    check("HcnQueryNamespaceProperties", hr, record)?;
    namespace_id_from_properties(&props)
}

/// Whether namespace `id` exists.
pub(crate) fn namespace_exists(id: &Guid) -> Result<bool> {
    let guid = to_guid(id);
    let mut handle: *mut c_void = std::ptr::null_mut();
    let mut record: PWSTR = std::ptr::null_mut();
    // SAFETY: valid pointers for the call.
    let hr = unsafe { HcnOpenNamespace(&guid, &mut handle, &mut record) };
    let _handle = Handle(handle);
    match check("HcnOpenNamespace", hr, record) {
        Ok(()) => Ok(true),
        Err(_) if is_not_found(hr) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes namespace `id`; one that does not exist is fine.
pub(crate) fn delete_namespace(id: &Guid) -> Result<()> {
    let guid = to_guid(id);
    let mut record: PWSTR = std::ptr::null_mut();
    // SAFETY: valid pointers for the call.
    let hr = unsafe { HcnDeleteNamespace(&guid, &mut record) };
    match check("HcnDeleteNamespace", hr, record) {
        Err(_) if is_not_found(hr) => Ok(()),
        other => other,
    }
}
