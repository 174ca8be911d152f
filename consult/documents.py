"""The texts a patient signs (R5): the informed-consent risk notice and the referral refusal.

Each text has a version and the SM3 digest of its exact wording. The client shows the text
and sends back the version and digest it showed; the consent record keeps both, so it proves
which wording was accepted. Changing a text means a new version (and a new digest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consult.crypto import sm3_hex
from consult.models import ConsentKind


@dataclass(frozen=True)
class Document:
    """One version of a text to sign, in Simplified Chinese and English."""

    kind: ConsentKind
    version: str
    text_zh: str
    text_en: str

    @property
    def digest(self) -> str:
        """SM3 of the exact wording (both languages), 64 hex characters."""
        return sm3_hex(f"{self.kind.value}\n{self.version}\n{self.text_zh}\n{self.text_en}")


RISK_NOTICE: Final = Document(
    kind=ConsentKind.RISK_NOTICE,
    version="risk-notice-2026-1",
    text_zh=(
        "互联网诊疗知情同意书及风险告知：\n"
        "1. 互联网诊疗仅适用于部分常见病、慢性病的复诊，您须已在实体医疗机构就同一疾病明确诊断。\n"
        "2. 医生无法进行体格检查，可能因信息不全而影响判断；医生认为不适宜线上诊疗时，"
        "将终止线上服务并建议您线下就诊。\n"
        "3. 急危重症请立即拨打120或前往急诊，不得通过互联网诊疗就诊。\n"
        "4. 6岁以下儿童须由监护人全程陪同。\n"
        "5. 诊疗过程中的文字、图片、音视频将依法留存，并受到保护。\n"
        "6. 网络或设备故障可能导致服务中断。\n"
        "我已阅读并理解上述内容，自愿接受互联网诊疗服务。"
    ),
    text_en=(
        "Informed consent and risk notice for internet care:\n"
        "1. Internet visits are only for follow-ups of common or chronic conditions already "
        "diagnosed at a physical medical institution.\n"
        "2. The doctor cannot examine you in person; missing information may affect the "
        "assessment. If the doctor finds online care unsuitable, the visit ends and you will be "
        "advised to attend in person.\n"
        "3. In an emergency call 120 or go to an emergency department; emergencies are not "
        "treated online.\n"
        "4. A child under 6 must be accompanied by a guardian throughout.\n"
        "5. Text, images, audio and video of the visit are kept as the law requires, and "
        "protected.\n"
        "6. Network or device failures may interrupt the service.\n"
        "I have read and understood the above and agree to internet care."
    ),
)

REFERRAL_REFUSAL: Final = Document(
    kind=ConsentKind.REFERRAL_REFUSAL,
    version="referral-refusal-2026-1",
    text_zh=(
        "拒绝线下转诊确认书：\n"
        "医生已告知我，我的病情不适宜继续线上诊疗，建议我前往实体医疗机构就诊，并说明了原因及"
        "不就诊可能带来的风险。我决定不接受线下转诊，由此产生的后果由本人承担。"
    ),
    text_en=(
        "Acknowledgement of a refused offline referral:\n"
        "The doctor has told me that my condition is unsuitable for further online care, "
        "advised me to attend a physical medical institution, and explained why and the risks "
        "of not doing so. I decline the referral and accept the consequences."
    ),
)

DOCUMENTS: Final = {doc.kind: doc for doc in (RISK_NOTICE, REFERRAL_REFUSAL)}
"""The current version of each kind of text."""
