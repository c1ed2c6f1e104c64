<#
.SYNOPSIS
  Installs crimux on a Windows node as the "crimux" Windows service.

.DESCRIPTION
  Run in an elevated PowerShell from the directory holding crimux.exe, this script and
  config.toml (the template next to it). It:
    1. copies crimux.exe to -BinDir;
    2. creates -DataDir with an ACL that admits only Administrators and SYSTEM;
    3. makes the mutual-TLS material with `crimux certs` (unless it exists);
    4. writes -DataDir\config.toml from the template: the containerd+HCS primary on
       npipe:////./pipe/containerd-containerd (handlers runhcs-wcow-process and
       runhcs-wcow-hypervisor) and the WSL2 delegate on tcp://127.0.0.1:<WslPort>;
    5. registers the service (automatic start, after containerd) with restart-on-failure,
       and starts it.
  Run wsl2-setup.sh inside the distro first (or right after: the service retries).
  Not executed in crimux's CI (Linux); see docs/windows.md, "What remains unverifiable".

.EXAMPLE
  .\install-crimux.ps1 -WslPort 10010
.EXAMPLE
  .\install-crimux.ps1 -WslPodNetwork host -NodeIP 192.168.1.20   # WSL mirrored networking
#>
[CmdletBinding()]
param(
    [string]$Source = $PSScriptRoot,
    [string]$BinDir = "$env:ProgramFiles\crimux",
    [string]$DataDir = "$env:ProgramData\crimux",
    [ValidateRange(1, 65535)][int]$WslPort = 10010,
    [ValidateSet("cni", "host")][string]$WslPodNetwork = "cni",
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
if ($WslPodNetwork -eq "host" -and $NodeIP -eq "") {
    throw "-WslPodNetwork host needs -NodeIP (the node's address, as given to kubelet's --node-ip)"
}

Write-Host "== crimux.exe -> $BinDir"
New-Item -ItemType Directory -Force -Path $BinDir | Out-Null
$service = Get-Service -Name crimux -ErrorAction SilentlyContinue
if ($service -and $service.Status -ne "Stopped") { Stop-Service -Name crimux }
Copy-Item -Force -Path (Join-Path $Source "crimux.exe") -Destination (Join-Path $BinDir "crimux.exe")
$exe = Join-Path $BinDir "crimux.exe"

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

$config = Join-Path $DataDir "config.toml"
if ((Test-Path $config) -and -not $ForceConfig) {
    Write-Host "== keeping $config (pass -ForceConfig to rewrite it)"
} else {
    Write-Host "== $config"
    $podNetwork = ""
    if ($WslPodNetwork -eq "host") {
        $podNetwork = "pod_network = `"host`"`nnode_ip = `"$NodeIP`""
    }
    $text = Get-Content -Raw -Path (Join-Path $Source "config.toml")
    $text = $text.Replace("__DATA_DIR__", $DataDir).Replace("__WSL_PORT__", "$WslPort").Replace("__WSL_POD_NETWORK__", $podNetwork)
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
    -Description "Kubernetes CRI runtime on npipe:////./pipe/crimux: Windows pods on containerd (HCS), Linux pods on the WSL2 delegate" | Out-Null
# Restart 5 s after each of the first two failures, then every 30 s; the count resets
# after a day without failures. failureflag 1: also when crimux exits with an error code
# (a backend unreachable at start), not only when it crashes.
Invoke-Checked "sc.exe failure" { sc.exe failure crimux reset= 86400 actions= restart/5000/restart/5000/restart/30000 | Out-Null }
Invoke-Checked "sc.exe failureflag" { sc.exe failureflag crimux 1 | Out-Null }

Start-Service -Name crimux
Start-Sleep -Seconds 3
Get-Service -Name crimux | Format-Table -AutoSize Name, Status, StartType

Write-Host ""
Write-Host "Check (see docs/windows.md):"
Write-Host "  crictl --runtime-endpoint npipe:////./pipe/crimux version"
Write-Host "  & '$exe' node-labels      # for kubelet's --node-labels"
