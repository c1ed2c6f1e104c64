//! Running as a Windows service. The service control manager (SCM) only starts a program
//! that connects back to it (`StartServiceCtrlDispatcherW`) and reports RUNNING; a plain
//! console program is killed after 30 s (error 1053). So at start crimux tries to connect;
//! from a console that fails at once (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) and crimux
//! runs as a console program, stopped by Ctrl-C.
//!
//! Under the SCM, a Stop or Shutdown control is reported as STOP_PENDING and turned into
//! crimux's ordinary graceful shutdown; SERVICE_STOPPED is reported when the shutdown
//! starts. A crimux that exits any other way (a startup error, a crash) leaves the service
//! RUNNING, which the SCM counts as a failure and answers with the recovery actions
//! `install-crimux.ps1` sets (`sc.exe failure ... restart`).

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;
use windows_sys::core::PWSTR;
use windows_sys::Win32::Foundation::{
    ERROR_CALL_NOT_IMPLEMENTED, ERROR_FAILED_SERVICE_CONTROLLER_CONNECT, NO_ERROR,
};
use windows_sys::Win32::System::Services::{
    RegisterServiceCtrlHandlerExW, SetServiceStatus, StartServiceCtrlDispatcherW,
    SERVICE_ACCEPT_SHUTDOWN, SERVICE_ACCEPT_STOP, SERVICE_CONTROL_INTERROGATE,
    SERVICE_CONTROL_SHUTDOWN, SERVICE_CONTROL_STOP, SERVICE_RUNNING, SERVICE_STATUS,
    SERVICE_STOPPED, SERVICE_STOP_PENDING, SERVICE_TABLE_ENTRYW, SERVICE_WIN32_OWN_PROCESS,
};

/// The name given to the SCM; an own-process service's name is not checked against it.
const SERVICE_NAME: &str = "crimux";

/// How long the SCM should wait for a graceful stop before it gives up on us.
const STOP_WAIT_HINT: Duration = Duration::from_secs(30);

/// Set to true when the SCM asks the service to stop.
static STOP: OnceLock<watch::Sender<bool>> = OnceLock::new();

/// The handle `SetServiceStatus` takes; null until the SCM has started us as a service.
static STATUS: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// Connects to the SCM on a dedicated thread (the dispatcher blocks for the service's
/// whole life) and returns a receiver that turns true when the service is told to stop.
/// From a console it never does.
pub fn watch_stop() -> watch::Receiver<bool> {
    if let Some(tx) = STOP.get() {
        return tx.subscribe();
    }
    let rx = STOP.get_or_init(|| watch::channel(false).0).subscribe();
    let spawned = std::thread::Builder::new()
        .name("crimux-scm".into())
        .spawn(dispatch);
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the service dispatcher thread");
    }
    rx
}

/// Tells the SCM the service has stopped (no-op outside the SCM).
pub fn report_stopped() {
    report(SERVICE_STOPPED, 0, Duration::ZERO);
}

fn dispatch() {
    let mut name = wide(SERVICE_NAME);
    let table = [
        SERVICE_TABLE_ENTRYW {
            lpServiceName: name.as_mut_ptr(),
            lpServiceProc: Some(service_main),
        },
        SERVICE_TABLE_ENTRYW {
            lpServiceName: std::ptr::null_mut(),
            lpServiceProc: None,
        },
    ];
    // SAFETY: `table` is a NULL-terminated array that outlives the call (which blocks
    // until the service stops); `name` outlives `table`.
    let ok = unsafe { StartServiceCtrlDispatcherW(table.as_ptr()) };
    if ok == 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT as i32) {
            tracing::debug!("not started by the service control manager: console mode");
        } else {
            tracing::warn!(error = %e, "cannot connect to the service control manager");
        }
    }
}

/// The SCM's entry point: register the control handler and report RUNNING. Returning is
/// allowed: the service keeps running until it reports STOPPED.
unsafe extern "system" fn service_main(_argc: u32, _argv: *mut PWSTR) {
    let name = wide(SERVICE_NAME);
    // SAFETY: `name` is NUL-terminated UTF-16; `control` has the handler signature.
    let handle =
        unsafe { RegisterServiceCtrlHandlerExW(name.as_ptr(), Some(control), std::ptr::null()) };
    if handle.is_null() {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot register the service control handler"
        );
        return;
    }
    STATUS.store(handle, Ordering::SeqCst);
    report(SERVICE_RUNNING, 0, Duration::ZERO);
    tracing::info!("running as the Windows service {SERVICE_NAME:?}");
}

unsafe extern "system" fn control(
    code: u32,
    _event: u32,
    _data: *mut c_void,
    _context: *mut c_void,
) -> u32 {
    match code {
        SERVICE_CONTROL_STOP | SERVICE_CONTROL_SHUTDOWN => {
            report(SERVICE_STOP_PENDING, 1, STOP_WAIT_HINT);
            if let Some(tx) = STOP.get() {
                tx.send_replace(true);
            }
            NO_ERROR
        }
        SERVICE_CONTROL_INTERROGATE => NO_ERROR,
        _ => ERROR_CALL_NOT_IMPLEMENTED,
    }
}

fn report(state: u32, checkpoint: u32, wait_hint: Duration) {
    let handle = STATUS.load(Ordering::SeqCst);
    if handle.is_null() {
        return;
    }
    let accepted = if state == SERVICE_RUNNING {
        SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN
    } else {
        0
    };
    let status = SERVICE_STATUS {
        dwServiceType: SERVICE_WIN32_OWN_PROCESS,
        dwCurrentState: state,
        dwControlsAccepted: accepted,
        dwWin32ExitCode: NO_ERROR,
        dwServiceSpecificExitCode: 0,
        dwCheckPoint: checkpoint,
        dwWaitHint: u32::try_from(wait_hint.as_millis()).unwrap_or(u32::MAX),
    };
    // SAFETY: `handle` came from RegisterServiceCtrlHandlerExW; `status` is a valid struct.
    if unsafe { SetServiceStatus(handle, &status) } == 0 {
        tracing::warn!(
            state,
            error = %std::io::Error::last_os_error(),
            "cannot report the service status"
        );
    }
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}
