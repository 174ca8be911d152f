// A small DICOMweb client for the viewer (QIDO-RS, WADO-RS metadata, the ECG JSON), with the
// bearer the page holds: a consult room's join token (it reads that room's studies only) or a
// signed-in session. Every read is checked and audited by the server (docs/imaging.md).

export const DICOMWEB = "/api/v1/dicomweb";

/** A DICOMweb refusal: HTTP status plus the server's stable code. */
export class DicomwebError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** The first value of a DICOM JSON attribute (tag "0020000D" ...), or undefined. */
export function value(item, tag) {
  const element = item?.[tag];
  if (!element || !element.Value || element.Value.length === 0) return undefined;
  const first = element.Value[0];
  if (first && typeof first === "object" && "Alphabetic" in first) return first.Alphabetic;
  return first;
}

/** A DICOM date (DA, "YYYYMMDD") as "YYYY-MM-DD"; anything else as it is. */
export function dicomDate(text) {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(text ?? "");
  return match ? `${match[1]}-${match[2]}-${match[3]}` : text;
}

export const TAG = {
  studyUid: "0020000D",
  seriesUid: "0020000E",
  instanceUid: "00080018",
  sopClassUid: "00080016",
  modality: "00080060",
  studyDate: "00080020",
  studyDescription: "00081030",
  seriesDescription: "0008103E",
  seriesNumber: "00200011",
  instanceNumber: "00200013",
  seriesInstances: "00201209",
  frames: "00280008",
};

export class DicomwebClient {
  constructor(bearer) {
    this.bearer = bearer;
  }

  headers(accept) {
    const headers = { Accept: accept };
    if (this.bearer) headers.Authorization = `Bearer ${this.bearer}`;
    return headers;
  }

  async json(path, accept = "application/dicom+json") {
    let response;
    try {
      response = await fetch(DICOMWEB + path, { headers: this.headers(accept), cache: "no-store" });
    } catch (err) {
      throw new DicomwebError(0, "network_error", String(err?.message ?? err));
    }
    if (!response.ok) {
      let code = "internal_error";
      let message = response.statusText;
      try {
        const body = await response.json();
        code = body?.error?.code ?? code;
        message = body?.error?.message ?? message;
      } catch {
        // not JSON: the status alone
      }
      throw new DicomwebError(response.status, code, message);
    }
    return response.json();
  }

  studies() {
    return this.json("/studies");
  }

  series(study) {
    return this.json(`/studies/${study}/series`);
  }

  instances(study, series) {
    return this.json(`/studies/${study}/series/${series}/instances`);
  }

  seriesMetadata(study, series) {
    return this.json(`/studies/${study}/series/${series}/metadata`);
  }

  ecg(study, series, instance) {
    return this.json(`/studies/${study}/series/${series}/instances/${instance}/ecg`, "application/json");
  }
}
