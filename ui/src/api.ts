// The documented API (/api/v1, docs/api.md) with the signed-in token as a
// bearer header. The token lives in session storage: no cookie is ever sent,
// so there is nothing for a cross-site request to ride on.

const TOKEN = "ota.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN);
}

export function signIn(value: string) {
  sessionStorage.setItem(TOKEN, value.trim());
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
}

/** An answer other than 2xx, with the server's code and message. */
export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token() ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new ApiError(response.status, json?.error ?? "error", json?.message ?? response.statusText);
  }
  return json as T;
}

export interface Me {
  subject: string;
  role: string;
  may: string[];
}

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  page_size: number;
}

export interface Wave {
  wave: number;
  size: number;
  assigned: number;
  skipped: number;
  started_at: string | null;
  in_progress: number;
  succeeded: number;
  failed: number;
  rejected: number;
  timed_out: number;
  cancelled: number;
}

export interface Gate {
  wave: number;
  gate: string;
  failed: number;
  finished: number;
  succeeded: number;
  size: number;
  threshold_percent: number;
}

export interface Decision {
  sequence: number;
  decision: string;
  wave: number | null;
  gate: Gate | null;
  reason: string | null;
  actor: string | null;
  decided_at: string;
}

export interface Campaign {
  id: string;
  name: string;
  status: string;
  firmware: { id: string; name: string; version: string; device_model: string };
  rollout: { failure_threshold_percent: number; success_threshold_percent: number };
  device_count: number;
  excluded: number;
  current_wave: number | null;
  awaiting_approval: boolean;
  waves: Wave[];
  unassigned: number;
  in_flight: number;
  decisions: Decision[];
  last_reason: string | null;
  created_by: string | null;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
}

export interface Firmware {
  id: string;
  name: string;
  version: string;
  device_model: string;
  hardware_versions: string[];
  filename: string;
  size: number;
  sha256: string;
  status: string;
  signature: { status?: string; key_id?: string } | string | null;
  created_by: string | null;
  created_at: string;
}

export interface Device {
  id: string;
  device_model: string;
  hardware_version: string | null;
  firmware_version: string | null;
  tags: string[];
  registered_at: string;
  last_seen: string | null;
}

export interface Update {
  device_id: string;
  action: number;
  kind: string;
  campaign_id: string | null;
  firmware_version: string;
  from_version: string | null;
  state: string;
  progress: number | null;
  message: string | null;
  assigned_by: string | null;
  assigned_at: string;
  updated_at: string;
  finished_at: string | null;
}

/** Uploads with progress (fetch reports none for request bodies). */
export function upload<T>(path: string, form: FormData, progress: (percent: number) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/v1${path}`);
    xhr.setRequestHeader("Authorization", `Bearer ${token() ?? ""}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress(Math.round((e.loaded * 100) / e.total)); };
    xhr.onerror = () => reject(new ApiError(0, "network", "the upload did not reach the server"));
    xhr.onload = () => {
      let json: any = null;
      try { json = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(json as T);
      else reject(new ApiError(xhr.status, json?.error ?? "error", json?.message ?? xhr.statusText));
    };
    xhr.send(form);
  });
}

export function errorText(e: unknown): string {
  return e instanceof ApiError ? `${e.message} (${e.code})` : String(e);
}
