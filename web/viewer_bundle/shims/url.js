// Node's "url" as the one bundled library that names it (@oozcitak/url, through dcmjs) uses it:
// domainToASCII / domainToUnicode, from the browser's own URL parser.
export function domainToASCII(domain) {
  try {
    return new URL(`http://${domain}`).hostname;
  } catch {
    return "";
  }
}

export function domainToUnicode(domain) {
  return domain;
}

export default { domainToASCII, domainToUnicode };
