<#
.SYNOPSIS
  Installs crimux on a Windows node as the "crimux" Windows service.

.DESCRIPTION
  Run in an elevated PowerShell from the directory holding crimux.exe, the Linux build of
  crimux and crimux-log (files "crimux" and "crimux-log", for the WSL2 distro), this script,
  config.toml (the template next to it) and wsl2-setup.sh. It:
    1. copies crimux.exe to -BinDir, and the Linux crimux and crimux-log to -BinDir\linux
       (readable from the distro, for wsl2-setup.sh --crimux);
    2. creates -DataDir with an ACL that admits only Administrators and SYSTEM;
    3. makes the mutual-TLS material with `crimux certs` (unless it exists), and copies
       what the distro's relay needs (ca.pem, server.pem, server-key.pem) to -WslCertsHandoff,
       a folder only the current user (and Administrators, SYSTEM) can read, because the
       distro may not be able to read the Administrators-only -DataDir through /mnt/c;
    4. writes -DataDir\config.toml from the template: the containerd+HCS primary on
       npipe:////./pipe/containerd-containerd (handlers runhcs-wcow-process and
       runhcs-wcow-hypervisor) and the WSL2 delegate, kind = "cri": the Linux crimux in the
       distro, reached on tcp://127.0.0.1:<WslPort> through its mutual-TLS relay, with
       C:\ mapped to /mnt/c/ and the handler "wsl2";
    5. registers the service (automatic start, after containerd) with restart-on-failure,
       and starts it, then prints the wsl2-setup.sh command line for the distro.
  Until wsl2-setup.sh has run in the distro the service cannot reach the "wsl2" backend,
  exits with code 2 and is restarted by the service manager (failure actions).
  The pod network of the WSL2 pods (WSL mirrored networking: pod_network = "host") is set
  in the distro: wsl2-setup.sh --pod-network host --node-ip <IP>.
  Not executed in crimux's CI (Linux); see docs/windows.md, "What remains unverifiable".

.EXAMPLE
  .\install-crimux.ps1 -WslPort 10010
.EXAMPLE
  .\install-crimux.ps1 -WslPort 10010 -WslDistro Ubuntu
#>
[CmdletBinding()]
param(
    [string]$Source = $PSScriptRoot,
    [string]$BinDir = "$env:ProgramFiles\crimux",
    [string]$DataDir = "$env:ProgramData\crimux",
    [ValidateRange(1, 65535)][int]$WslPort = 10010,
    [string]$WslDistro = "",
    [string]$WslCertsHandoff = (Join-Path $env:USERPROFILE "crimux-wsl2-certs"),
    # Moved to the distro (wsl2-setup.sh --pod-network/--node-ip); refused with a hint here.
    [string]$WslPodNetwork = "",
    [string]$NodeIP = "",
    [switch]$ForceConfig
)

$ErrorActionPreference = "Stop"

function Invoke-Checked([string]$What, [scriptblock]$Block) {
    & $Block
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "run this script in an elevated (Administrator) PowerShell"
}
if ($WslPodNetwork -ne "" -or $NodeIP -ne "") {
    throw "-WslPodNetwork and -NodeIP moved into the distro: run wsl2-setup.sh --pod-network host --node-ip <IP> there (the Linux crimux does the pods' networking)"
}

# A Windows path as the distro sees it through WSL's drive mount (C:\x\y -> /mnt/c/x/y).
function ConvertTo-WslPath([string]$Path) {
    $full = [System.IO.Path]::GetFullPath($Path)
    return "/mnt/" + $full.Substring(0, 1).ToLowerInvariant() + ($full.Substring(2) -replace '\\', '/')
}

Write-Host "== crimux.exe -> $BinDir"
New-Item -ItemType Directory -Force -Path $BinDir | Out-Null
$service = Get-Service -Name crimux -ErrorAction SilentlyContinue
if ($service -and $service.Status -ne "Stopped") { Stop-Service -Name crimux }
Copy-Item -Force -Path (Join-Path $Source "crimux.exe") -Destination (Join-Path $BinDir "crimux.exe")
$exe = Join-Path $BinDir "crimux.exe"
# The Linux build for the distro: crimux-log must sit next to crimux there too.
$linuxDir = Join-Path $BinDir "linux"
$haveLinux = (Test-Path -PathType Leaf (Join-Path $Source "crimux")) -and (Test-Path -PathType Leaf (Join-Path $Source "crimux-log"))
if ($haveLinux) {
    Write-Host "== Linux crimux and crimux-log -> $linuxDir"
    New-Item -ItemType Directory -Force -Path $linuxDir | Out-Null
    Copy-Item -Force -Path (Join-Path $Source "crimux") -Destination (Join-Path $linuxDir "crimux")
    Copy-Item -Force -Path (Join-Path $Source "crimux-log") -Destination (Join-Path $linuxDir "crimux-log")
} else {
    Write-Warning "no Linux build (crimux, crimux-log) in $Source; give wsl2-setup.sh --crimux another path (the same version as crimux.exe)"
}

Write-Host "== $DataDir (Administrators and SYSTEM only)"
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
# Well-known SIDs, so this works on any display language:
# S-1-5-32-544 = BUILTIN\Administrators, S-1-5-18 = NT AUTHORITY\SYSTEM.
Invoke-Checked "icacls $DataDir" {
    icacls.exe $DataDir /inheritance:r /grant:r "*S-1-5-32-544:(OI)(CI)F" "*S-1-5-18:(OI)(CI)F" | Out-Null
}

$certs = Join-Path $DataDir "certs"
if (-not (Test-Path (Join-Path $certs "ca.pem"))) {
    Write-Host "== TLS material in $certs"
    Invoke-Checked "crimux certs" {
        & $exe certs --out $certs --server-name localhost --server-name 127.0.0.1
    }
} else {
    Write-Host "== keeping the TLS material in $certs"
}
# Keys get the same two-entry ACL explicitly (in case the directory existed before).
Get-ChildItem -Path $certs -Filter "*-key.pem" | ForEach-Object {
    $key = $_.FullName
    Invoke-Checked "icacls $key" {
        icacls.exe $key /inheritance:r /grant:r "*S-1-5-32-544:F" "*S-1-5-18:F" | Out-Null
    }
}

# The distro reads these through /mnt/c as the user who runs WSL, whose unelevated token
# may not pass the Administrators-only ACL of $DataDir: hand them over in a folder of that
# user's. wsl2-setup.sh copies them into /etc/crimux/tls; delete the folder afterwards.
Write-Host "== $WslCertsHandoff (ca.pem, server.pem, server-key.pem for the distro's relay)"
$me = [Security.Principal.WindowsIdentity]::GetCurrent().User.Value
New-Item -ItemType Directory -Force -Path $WslCertsHandoff | Out-Null
Invoke-Checked "icacls $WslCertsHandoff" {
    icacls.exe $WslCertsHandoff /inheritance:r /grant:r "*${me}:(OI)(CI)F" "*S-1-5-32-544:(OI)(CI)F" "*S-1-5-18:(OI)(CI)F" | Out-Null
}
foreach ($name in @("ca.pem", "server.pem", "server-key.pem")) {
    $copy = Join-Path $WslCertsHandoff $name
    Copy-Item -Force -Path (Join-Path $certs $name) -Destination $copy
    # A copy may keep the source's explicit ACL: give it the folder's.
    Invoke-Checked "icacls $copy" {
        icacls.exe $copy /inheritance:r /grant:r "*${me}:F" "*S-1-5-32-544:F" "*S-1-5-18:F" | Out-Null
    }
}

$config = Join-Path $DataDir "config.toml"
if ((Test-Path $config) -and -not $ForceConfig) {
    Write-Host "== keeping $config (pass -ForceConfig to rewrite it)"
    # A config from before the distro ran its own crimux points a containerd backend at
    # the relay, which now leads to a crimux: that backend would fail at start.
    if (-not (Select-String -Quiet -Path $config -Pattern '^\s*kind\s*=\s*"cri"')) {
        Write-Warning "$config has no kind = `"cri`" backend: the WSL2 delegate is now the distro's crimux; rerun with -ForceConfig (see docs/windows.md)"
    }
} else {
    Write-Host "== $config"
    $text = Get-Content -Raw -Path (Join-Path $Source "config.toml")
    $text = $text.Replace("__DATA_DIR__", $DataDir).Replace("__WSL_PORT__", "$WslPort")
    # UTF-8 without a byte-order mark: the TOML parser wants plain UTF-8.
    [System.IO.File]::WriteAllText($config, $text, (New-Object System.Text.UTF8Encoding($false)))
}

Write-Host "== service crimux"
# The SCM gives a service no stderr: the log goes to a file next to the config.
$logFile = Join-Path $DataDir "crimux.log"
$binPath = "`"$exe`" --config `"$config`" --log-file `"$logFile`""
# New-Service takes the command line as one .NET string; passing it through sc.exe's
# argv would mangle the embedded quotes in Windows PowerShell 5.1. An existing service is
# deleted and created again so its command line is always this one.
if (Get-Service -Name crimux -ErrorAction SilentlyContinue) {
    Invoke-Checked "sc.exe delete" { sc.exe delete crimux | Out-Null }
    Start-Sleep -Seconds 2
}
New-Service -Name crimux -BinaryPathName $binPath -DisplayName "crimux CRI runtime" `
    -StartupType Automatic -DependsOn containerd `
    -Description "Kubernetes CRI runtime on npipe:////./pipe/crimux: Windows pods on containerd (HCS), Linux pods on the crimux in the WSL2 distro" | Out-Null
# Restart 5 s after each of the first two failures, then every 30 s; the count resets
# after a day without failures. failureflag 1: also when crimux exits with an error code
# (a backend unreachable at start), not only when it crashes.
Invoke-Checked "sc.exe failure" { sc.exe failure crimux reset= 86400 actions= restart/5000/restart/5000/restart/30000 | Out-Null }
Invoke-Checked "sc.exe failureflag" { sc.exe failureflag crimux 1 | Out-Null }

# Until the distro's crimux answers, crimux exits with code 2 and the SCM restarts it:
# a failed start here is expected on a first install.
try { Start-Service -Name crimux } catch { Write-Warning "crimux did not start yet: $($_.Exception.Message) (see $logFile)" }
Start-Sleep -Seconds 3
Get-Service -Name crimux | Format-Table -AutoSize Name, Status, StartType

$wsl = "wsl.exe"
if ($WslDistro -ne "") { $wsl = "wsl.exe -d $WslDistro" }
$linuxCrimux = "<the Linux crimux, same version>"
if ($haveLinux) { $linuxCrimux = ConvertTo-WslPath (Join-Path $linuxDir "crimux") }
$setup = ConvertTo-WslPath (Join-Path $Source "wsl2-setup.sh")
Write-Host ""
Write-Host "Next, set up the distro (see docs/windows.md, step 3):"
Write-Host "  $wsl -u root -- bash '$setup' --certs '$(ConvertTo-WslPath $WslCertsHandoff)' --crimux '$linuxCrimux' --port $WslPort"
Write-Host "  Remove-Item -Recurse '$WslCertsHandoff'      # once wsl2-setup.sh has copied the files"
Write-Host ""
Write-Host "Check (see docs/windows.md):"
Write-Host "  crictl --runtime-endpoint npipe:////./pipe/crimux version"
Write-Host "  & '$exe' node-labels      # for kubelet's --node-labels"
