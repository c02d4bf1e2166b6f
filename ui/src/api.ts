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
