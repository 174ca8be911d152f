"""The one table of error codes: code, category, HTTP status, and the text people see (zh, en).

Every stable code a client can meet is here: the domain's (:mod:`consult.errors`), the REST
edge's (``web/api``), signaling's, and the few the browser makes itself (a network failure).
From it come the HTTP status of a refusal (``web.api.errors.status_of``), the browser's one
error dictionary (``/errors.js``, keys ``error.<code>``), and ``docs/errors.md``
(``python -m consult.error_table > docs/errors.md``). ``tests/consult/test_error_table.py``
fails on a code without its texts, or on one that a boundary raises but the table lacks.

Categories: ``unauthenticated`` 401, ``forbidden`` 403, ``not_found`` 404, ``invalid`` 422,
``bad_request`` 400 (the shape of a request), ``conflict`` 409 (the current state), ``rule`` 409
(a rule of care), ``too_large`` 413, ``rate_limited`` 429, ``timeout`` 408 (a request too slow
to arrive), ``unsupported`` 415, ``not_acceptable`` 406,
``unavailable`` 503, ``internal`` 500, ``client`` (made by the browser; never sent by the
server).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

CATEGORY_STATUS: Final[Mapping[str, int]] = {
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "invalid": 422,
    "bad_request": 400,
    "conflict": 409,
    "rule": 409,
    "too_large": 413,
    "rate_limited": 429,
    "timeout": 408,
    "unsupported": 415,
    "not_acceptable": 406,
    "unavailable": 503,
    "internal": 500,
    "client": 0,
}


@dataclass(frozen=True)
class ErrorCode:
    """One row of the table."""

    code: str
    category: str
    zh: str
    en: str

    @property
    def status(self) -> int:
        """The HTTP status of a REST answer with this code (0: the browser's own)."""
        return CATEGORY_STATUS[self.category]


_ROWS: Final = [
    # --- Sign-in, sessions, join tokens (R33) ---
    ("unauthenticated", "unauthenticated", "请先登录。", "Please sign in."),
    (
        "invalid_credentials",
        "unauthenticated",
        "用户名、密码或动态验证码不正确。",
        "The username, password or code is wrong.",
    ),
    (
        "account_locked",
        "unauthenticated",
        "连续输错次数太多，账号已锁定 10 分钟。",
        "Too many failed attempts; the account is locked for 10 minutes.",
    ),
    (
        "rate_limited",
        "rate_limited",
        "操作太频繁，请稍后再试。",
        "Too many requests; wait a moment and try again.",
    ),
    (
        "enrolment_link_invalid",
        "unauthenticated",
        "该设置链接无效或已过期，请联系管理员重新发放。",
        "This enrolment link is not valid; ask the administrator for a new one.",
    ),
    (
        "credentials_set_by_person",
        "forbidden",
        "管理员不能为医护人员设置密码，请发放一次性设置链接。",
        "An administrator cannot set a clinician's password; issue a one-time enrolment link.",
    ),
    (
        "request_timeout",
        "timeout",
        "请求发送太慢，连接已断开。",
        "The request arrived too slowly; the connection was closed.",
    ),
    (
        "totp_required",
        "unauthenticated",
        "请输入验证器应用中的 6 位动态验证码。",
        "Enter the 6-digit code from your authenticator app.",
    ),
    (
        "session_invalid",
        "unauthenticated",
        "登录已失效，请重新登录。",
        "The sign-in is no longer valid; please sign in again.",
    ),
    (
        "session_expired",
        "unauthenticated",
        "长时间未操作，登录已过期，请重新登录。",
        "The sign-in expired after a period without activity; please sign in again.",
    ),
    (
        "token_missing",
        "unauthenticated",
        "链接缺少凭证，请使用医院发给您的完整链接。",
        "The link has no access token. Please use the full link from the hospital.",
    ),
    (
        "token_invalid",
        "unauthenticated",
        "链接无效，请向医院索取新的链接。",
        "The link is not valid. Please ask the hospital for a new link.",
    ),
    (
        "token_expired",
        "unauthenticated",
        "链接已过期，请向医院索取新的链接。",
        "The link has expired. Please ask the hospital for a new link.",
    ),
    (
        "token_revoked",
        "unauthenticated",
        "链接已失效（已退出登录、修改了密码或账号已停用），请重新登录。",
        "The link no longer works (signed out, password changed or account deactivated); "
        "please sign in again.",
    ),
    (
        "token_in_query",
        "bad_request",
        "这个链接是旧格式，已不能使用，请向医院索取新的链接。",
        "This link is in an old format that no longer works; please ask the hospital for a new "
        "link.",
    ),
    ("forbidden", "forbidden", "您没有执行此操作的权限。", "You may not do this."),
    (
        "totp_enrolment_required",
        "forbidden",
        "请先设置两步验证。",
        "Set up two-step sign-in first.",
    ),
    (
        "totp_invalid",
        "invalid",
        "验证码不正确，请输入应用中当前显示的数字。",
        "The code is wrong; enter the one the app shows now.",
    ),
    (
        "totp_already_enrolled",
        "conflict",
        "两步验证已经设置好了。",
        "Two-step sign-in is already set up.",
    ),
    (
        "totp_not_enrolled",
        "conflict",
        "请先开始设置两步验证。",
        "Start setting up two-step sign-in first.",
    ),
    (
        "weak_password",
        "invalid",
        "密码至少 10 位，并包含大写字母、小写字母、数字、符号中的三类。",
        "Use at least 10 characters from three of: lower case, upper case, digits, symbols.",
    ),
    # --- Accounts and organisation ---
    ("username_taken", "conflict", "用户名已被使用。", "The username is taken."),
    ("user_not_found", "not_found", "找不到这个账号。", "The account does not exist."),
    ("reminder_not_found", "not_found", "找不到这条提醒。", "The reminder does not exist."),
    ("institution_not_found", "not_found", "找不到这家机构。", "The institution does not exist."),
    ("department_not_found", "not_found", "找不到这个科室。", "The department does not exist."),
    # --- Practitioners (R9, R35) ---
    (
        "practitioner_not_found",
        "not_found",
        "找不到这位医生的执业信息。",
        "The practitioner does not exist.",
    ),
    (
        "practitioner_exists",
        "conflict",
        "这个账号或执业证号已经登记过了。",
        "A practitioner with this account or licence number exists.",
    ),
    (
        "practitioner_not_verified",
        "rule",
        "医生的执业资格尚未核验，暂不能接诊。",
        "The doctor's licence is not verified yet.",
    ),
    ("signing_pin_not_set", "conflict", "请先设置签名密码。", "Set a signing PIN first."),
    ("signing_pin_invalid", "forbidden", "签名密码不正确。", "The signing PIN is wrong."),
    (
        "signing_pin_locked",
        "forbidden",
        "签名密码输错次数太多，已锁定 10 分钟。",
        "Too many wrong PINs; signing is locked for 10 minutes.",
    ),
    (
        "weak_pin",
        "invalid",
        "签名密码需为 6 到 12 位数字，且不能是连号或重复数字。",
        "Use a PIN of 6 to 12 digits that is not a run or a repeat.",
    ),
    # --- Patients ---
    ("invalid_id_number", "invalid", "身份证号码不正确。", "The ID number is not valid."),
    ("invalid_phone", "invalid", "手机号码不正确。", "The phone number is not valid."),
    ("patient_not_found", "not_found", "找不到这位患者。", "The patient does not exist."),
    ("patient_exists", "conflict", "这位患者已经登记过了。", "The patient is already registered."),
    (
        "identity_disputed",
        "conflict",
        "这份登记的身份证号有争议，请先在“身份争议”中核实处理。",
        "This record's ID number is disputed; resolve it under identity disputes first.",
    ),
    (
        "dispute_not_found",
        "not_found",
        "找不到这条身份争议。",
        "The identity dispute does not exist.",
    ),
    (
        "dispute_closed",
        "conflict",
        "这条身份争议已经处理过了。",
        "The identity dispute is resolved already.",
    ),
    (
        "guardian_pending",
        "forbidden",
        "医院还没有核实您与这位患者的监护关系，请携带证明材料到医院窗口核实。",
        "The hospital has not verified your relation to this patient yet; bring proof to the desk.",
    ),
    (
        "guardian_not_pending",
        "conflict",
        "这位患者没有待核实的监护关系。",
        "This patient has no guardian relation waiting for verification.",
    ),
    # --- Visits (R1-R9) ---
    ("visit_not_found", "not_found", "找不到这次就诊。", "This visit was not found."),
    ("room_not_found", "not_found", "找不到这个诊室。", "This room was not found."),
    ("invitation_not_found", "not_found", "邀请链接无效。", "This invitation link does not exist."),
    (
        "invitation_used",
        "conflict",
        "此邀请链接已被使用，每个链接只能使用一次。",
        "This invitation link has been used already.",
    ),
    ("invitation_expired", "conflict", "此邀请链接已过期。", "This invitation link has expired."),
    (
        "not_a_participant",
        "forbidden",
        "您不是这个诊室的参与者。",
        "You are not a participant of this room.",
    ),
    (
        "not_admitted",
        "forbidden",
        "医生还没有接诊，请在候诊室稍候。",
        "The doctor has not admitted you yet; please wait in the waiting room.",
    ),
    ("visit_closed", "conflict", "这次就诊已经结束。", "This visit is over."),
    (
        "invalid_transition",
        "conflict",
        "当前状态下不能执行此操作。",
        "This cannot be done in the visit's current state.",
    ),
    (
        "first_visit_refused",
        "rule",
        "互联网诊疗只用于复诊：需要有实体医院对同一疾病的诊断。",
        "Online visits are for follow-ups only: a hospital's prior diagnosis of this condition "
        "is needed.",
    ),
    (
        "guardian_required",
        "rule",
        "6 岁以下儿童就诊需要监护人陪同。",
        "A child under 6 needs a guardian present.",
    ),
    (
        "emergency_not_allowed",
        "rule",
        "急危重症不能在线诊疗，请拨打 120 或前往急诊。",
        "Emergencies cannot be seen online; call 120 or go to an emergency room.",
    ),
    (
        "consent_required",
        "rule",
        "请先阅读并签署知情同意书。",
        "Read and sign the informed consent first.",
    ),
    (
        "consent_mismatch",
        "invalid",
        "同意书内容已更新，请刷新页面后重新阅读。",
        "The consent text has changed; reload the page and read it again.",
    ),
    ("already_signed", "conflict", "已经签署过了。", "Already signed."),
    # --- Ratings (R40) ---
    (
        "visit_not_finished",
        "rule",
        "就诊结束后才能评价。",
        "Only a finished visit can be rated.",
    ),
    (
        "rating_window_closed",
        "rule",
        "已超过允许的时间（就诊结束 15 天内评价，评价后 30 天内修改或回复）。",
        "The time allowed has passed (rate within 15 days of the visit; edit or reply within "
        "30 days of the rating).",
    ),
    ("already_rated", "conflict", "这次就诊已经评价过了。", "This visit has been rated already."),
    (
        "rating_edit_used",
        "conflict",
        "评价只能修改一次，已经修改过了。",
        "A rating can be edited once, and this one has been.",
    ),
    (
        "rating_already_replied",
        "conflict",
        "医生已经回复过这条评价。",
        "The doctor has replied to this rating already.",
    ),
    ("rating_not_found", "not_found", "这次就诊还没有评价。", "This visit has no rating yet."),
    ("rating_stars_invalid", "invalid", "请选择 1 到 5 颗星。", "Choose 1 to 5 stars."),
    (
        "rating_text_invalid",
        "invalid",
        "文字太长（最多 500 字）或含有无法保存的字符。",
        "The text is too long (500 characters at most) or has characters that cannot be kept.",
    ),
    ("doctor_offline", "rule", "医生目前不在线。", "The doctor is not online."),
    (
        "doctor_busy",
        "conflict",
        "诊室里还有一位患者，请先结束或送回候诊。",
        "Another patient is in the room; end or send back that visit first.",
    ),
    (
        "visit_exists",
        "conflict",
        "已经有一个同一医生、同一疾病的预约还没有结束，请使用那个预约，或先取消它。",
        "There is already an open visit with this doctor for this condition; use it, or cancel "
        "it first.",
    ),
    ("slot_not_found", "not_found", "找不到这个号源。", "The schedule slot does not exist."),
    (
        "slot_unavailable",
        "conflict",
        "这个号源已满或已过期。",
        "The schedule slot is full or over.",
    ),
    # --- Chat (issue 6) ---
    ("message_empty", "invalid", "消息是空的。", "The message is empty."),
    (
        "message_too_long",
        "invalid",
        "消息太长了（最多 2000 个字）。",
        "The message is too long (2000 characters at most).",
    ),
    (
        "message_invalid_characters",
        "invalid",
        "消息里有无法发送的字符。",
        "The message has characters that cannot be sent.",
    ),
    (
        "sensitive_word",
        "rule",
        "消息未发送：其中含有不允许使用的词语，请修改后再发送。",
        "The message was not sent: it contains a word that may not be used here. Please "
        "rephrase it.",
    ),
    ("message_not_found", "not_found", "找不到这条消息。", "The message does not exist."),
    ("retract_not_allowed", "forbidden", "不能撤回这条消息。", "You cannot retract this message."),
    ("image_not_found", "not_found", "找不到这张图片。", "The image does not exist."),
    (
        "image_type_unsupported",
        "invalid",
        "只能发送 JPEG、PNG 或 WebP 图片。",
        "Only JPEG, PNG and WebP pictures can be sent.",
    ),
    (
        "image_too_large",
        "invalid",
        "图片文件太大（最多 10 MB）。",
        "The picture file is too large (10 MB at most).",
    ),
    ("image_too_many_pixels", "invalid", "图片尺寸太大。", "The picture is too large."),
    ("image_unreadable", "invalid", "图片已损坏，无法读取。", "The picture cannot be read."),
    (
        "word_invalid",
        "invalid",
        "词语为空或超过 64 个字。",
        "The word is empty or longer than 64 characters.",
    ),
    ("word_not_found", "not_found", "词表里没有这个词。", "The word is not on the list."),
    # --- Imaging (DICOM, DICOMweb) ---
    ("study_not_found", "not_found", "找不到这项检查。", "The study does not exist."),
    (
        "study_not_linked",
        "conflict",
        "这项检查还没有关联到就诊。",
        "The study is not attached to a visit.",
    ),
    ("instance_not_found", "not_found", "找不到这幅影像。", "The image does not exist."),
    ("frame_not_found", "not_found", "找不到这一帧影像。", "The frame does not exist."),
    ("bulkdata_not_found", "not_found", "找不到这部分影像数据。", "The image data does not exist."),
    ("dicom_invalid", "invalid", "DICOM 数据不符合要求。", "The DICOM data is not acceptable."),
    (
        "qido_invalid",
        "invalid",
        "影像查询的条件不受支持或格式不正确。",
        "A query parameter is not supported or malformed.",
    ),
    (
        "cfind_invalid",
        "invalid",
        "影像查询（C-FIND）的条件无效。",
        "The C-FIND identifier is not a valid Study Root query.",
    ),
    (
        "dicom_malformed",
        "invalid",
        "文件不是格式正确的 DICOM 文件。",
        "The file is not a well-formed DICOM file.",
    ),
    (
        "dicom_missing_attribute",
        "invalid",
        "DICOM 文件缺少必需的属性。",
        "A required DICOM attribute is missing.",
    ),
    (
        "dicom_invalid_uid",
        "invalid",
        "DICOM 标识符（UID）格式不正确。",
        "A DICOM UID is malformed.",
    ),
    (
        "dicom_unsupported_transfer_syntax",
        "invalid",
        "不支持这种 DICOM 传输语法。",
        "The DICOM transfer syntax is not supported.",
    ),
    (
        "dicom_pixel_data_invalid",
        "invalid",
        "影像像素数据与影像描述不符。",
        "The pixel data does not match the image description.",
    ),
    (
        "aecg_malformed",
        "invalid",
        "不是格式正确的 HL7 aECG 心电图文件。",
        "The file is not a well-formed HL7 aECG document.",
    ),
    (
        "aecg_uncalibrated",
        "invalid",
        "心电图导联缺少电压刻度（uV、mV 或 V）或数值超出范围。",
        "A lead of the ECG has no voltage scale (uV, mV or V) or its values are out of range.",
    ),
    ("aecg_too_large", "too_large", "心电图文件太大。", "The ECG document is too large."),
    ("dicom_too_large", "invalid", "DICOM 数据太大。", "The DICOM data is too large."),
    (
        "dicom_study_mismatch",
        "invalid",
        "这幅影像属于另一项检查。",
        "The image belongs to another study.",
    ),
    ("frame_not_renderable", "invalid", "这一帧影像无法显示。", "The frame cannot be rendered."),
    (
        "ecg_unreadable",
        "invalid",
        "该影像中没有可校准的心电图。",
        "The instance holds no ECG that can be calibrated.",
    ),
    ("bad_multipart", "bad_request", "上传内容的格式不正确。", "The upload is not well-formed."),
    ("too_many_frames", "bad_request", "一次请求的帧数太多。", "Too many frames in one request."),
    (
        "not_acceptable",
        "not_acceptable",
        "无法以所要求的格式提供。",
        "It cannot be given in the format asked for.",
    ),
    # --- Remote consultation (issue 14, R10-R16, R24, R27) ---
    ("consultation_not_found", "not_found", "会诊申请不存在。", "The consultation does not exist."),
    ("invitation_not_found", "not_found", "会诊邀请不存在。", "The invitation does not exist."),
    ("report_not_found", "not_found", "会诊意见报告不存在。", "The opinion report does not exist."),
    ("attachment_not_found", "not_found", "附件不存在。", "The attachment does not exist."),
    (
        "no_cooperation_agreement",
        "rule",
        "本机构与该机构没有会诊合作协议，不能邀请。",
        "There is no cooperation agreement with this institution; it cannot be invited.",
    ),
    (
        "no_consult_centre",
        "rule",
        "该机构尚未设置会诊中心。",
        "The institution has no consult centre yet.",
    ),
    (
        "expert_not_qualified",
        "rule",
        "该专家不符合要求：须经认证、独立执业满 3 年且职称符合申请。",
        "The expert does not qualify: verified, 3+ years of independent practice and the title "
        "asked are required.",
    ),
    (
        "expert_of_other_institution",
        "rule",
        "该专家不属于受邀机构。",
        "The expert does not belong to the invited institution.",
    ),
    (
        "inviter_not_qualified",
        "rule",
        "申请会诊的须是经认证的执业医师。",
        "The requesting doctor must be a verified physician.",
    ),
    (
        "decline_reason_required",
        "invalid",
        "拒绝会诊须填写原因。",
        "A decline needs its reason.",
    ),
    (
        "invitation_expired",
        "conflict",
        "已超过答复期限，邀请已失效。",
        "The time to answer has passed; the invitation has expired.",
    ),
    (
        "schedule_conflict",
        "conflict",
        "申请医生或已接受的专家在该时间已有安排，请另选时间。",
        "The requester or an accepted expert is busy at that time; choose another.",
    ),
    (
        "schedule_in_past",
        "invalid",
        "会诊时间须晚于当前时间。",
        "A session can only be scheduled in the future.",
    ),
    (
        "expert_already_invited",
        "conflict",
        "该专家已被邀请。",
        "This expert is already invited.",
    ),
    (
        "report_signed",
        "conflict",
        "报告已签名，不能修改；请新建版本。",
        "The report is signed and cannot be changed; make a new version.",
    ),
    ("report_unsigned", "conflict", "报告尚未签名。", "The report has no signature yet."),
    (
        "report_already_signed_by_you",
        "conflict",
        "您已签署过此报告。",
        "You have already signed this report.",
    ),
    (
        "signing_unavailable",
        "conflict",
        "本服务器未配置签名证书机构，暂不能签名。",
        "Report signing is not configured on this server.",
    ),
    (
        "attachment_refused",
        "invalid",
        "只能上传 10 MB 以内的 PDF、PNG 或 JPEG 文件。",
        "Only PDF, PNG and JPEG files up to 10 MB may be attached.",
    ),
    ("consultation_closed", "conflict", "该会诊已结束。", "The consultation is closed."),
    # --- After the report: referral (R17) and report interpretation (R18) ---
    (
        "not_your_consultation",
        "forbidden",
        "这不是您的会诊。",
        "Not your consultation.",
    ),
    (
        "consultation_not_reported",
        "conflict",
        "会诊报告尚未出具。",
        "The consultation's report has not been issued yet.",
    ),
    ("referral_not_found", "not_found", "转诊不存在。", "The referral does not exist."),
    (
        "referral_decline_reason_required",
        "invalid",
        "拒绝转诊须填写原因。",
        "Declining a referral needs its reason.",
    ),
    (
        "referral_answered",
        "conflict",
        "该转诊已答复或已撤销。",
        "The referral has already been answered or cancelled.",
    ),
    (
        "referral_open",
        "conflict",
        "该会诊已有一个待答复的转诊。",
        "A referral of this consultation is already waiting for its answer.",
    ),
    (
        "interpretation_not_found",
        "not_found",
        "报告解读申请不存在。",
        "The interpretation request does not exist.",
    ),
    (
        "interpretation_answered",
        "conflict",
        "该报告解读申请已答复或已撤销。",
        "The interpretation request has already been answered or cancelled.",
    ),
    (
        "exam_required",
        "rule",
        "远程诊断申请须附上至少一项检查（影像、心电、病理或超声）。",
        "A remote diagnosis request needs at least one exam (imaging, ECG, pathology or"
        " ultrasound) attached.",
    ),
    (
        "exam_not_attachable",
        "rule",
        "只能附上本机构为该患者所做的检查。",
        "Only an exam your institution holds for this patient can be attached.",
    ),
    ("exam_not_found", "not_found", "检查不存在。", "The exam does not exist."),
    (
        "invitation_closed",
        "conflict",
        "该邀请已答复或已撤回。",
        "The invitation has been answered or withdrawn.",
    ),
    (
        "report_superseded",
        "conflict",
        "此版本已被新版本取代。",
        "A newer version of the report replaced this one.",
    ),
    # --- Categories (a refusal without a more specific code) ---
    ("not_found", "not_found", "找不到相应的记录。", "Not found."),
    ("invalid_input", "invalid", "填写的内容不正确。", "Some of the input is not valid."),
    (
        "conflict",
        "conflict",
        "与当前状态冲突，请刷新后再试。",
        "This conflicts with the current state; reload and try again.",
    ),
    ("rule_refused", "rule", "诊疗规则不允许此操作。", "A rule of care refuses this."),
    ("consult_error", "conflict", "请求被拒绝。", "The request was refused."),
    # --- The REST edge (web/api) ---
    ("bad_json", "bad_request", "请求格式不正确。", "The request was malformed."),
    ("empty_body", "bad_request", "请求内容是空的。", "The request has no content."),
    (
        "invalid_request",
        "invalid",
        "填写的内容格式不正确。",
        "Some of the input is not in the right form.",
    ),
    (
        "payload_too_large",
        "too_large",
        "文件太大（最多 10 MB）。",
        "The file is too large (10 MB at most).",
    ),
    (
        "unsupported_media_type",
        "unsupported",
        "不支持这种文件类型。",
        "This type of file is not supported.",
    ),
    (
        "composite_not_ready",
        "not_found",
        "回放视频还在生成中，请稍后再试。",
        "The playback video is still being made; try again later.",
    ),
    (
        "internal_error",
        "internal",
        "服务器内部错误，请稍后再试。",
        "Internal server error; please try again later.",
    ),
    # --- Signaling (docs/signaling.md) ---
    ("bad_request", "bad_request", "请求格式不正确。", "The request was malformed."),
    ("message_too_large", "too_large", "消息太大。", "The message is too large."),
    ("bad_sdp", "bad_request", "音视频协商失败。", "Audio/video negotiation failed."),
    ("not_joined", "conflict", "尚未进入会诊。", "Not in the consultation yet."),
    ("already_joined", "conflict", "已经在会诊中。", "Already in the consultation."),
    ("visit_mismatch", "forbidden", "链接与就诊不匹配。", "The link does not match this visit."),
    ("invalid_state", "conflict", "当前状态下不能执行此操作。", "This cannot be done right now."),
    (
        "stale_answer",
        "conflict",
        "音视频协商已过期，正在重试。",
        "Audio/video negotiation was out of date; retrying.",
    ),
    ("busy", "unavailable", "服务器繁忙，请稍候。", "The server is busy, please wait."),
    # --- Review together (signaling/review.py, docs/review.md) ---
    (
        "not_in_review",
        "conflict",
        "尚未加入共同阅片。",
        "Not in the shared review yet.",
    ),
    (
        "not_presenter",
        "conflict",
        "只有主讲人可以操作共享画面。",
        "Only the presenter controls the shared view.",
    ),
    ("nothing_shared", "conflict", "还没有共享影像或心电图。", "No study or ECG is shared yet."),
    ("nothing_to_save", "conflict", "没有可保存的测量。", "There is no measurement to save."),
    (
        "annotation_not_measurable",
        "invalid",
        "测量无法保存到影像上（不在影像平面内、超出影像或缺少像素间距）。",
        "The measurement cannot be saved on its image (off its plane, outside it, or no pixel"
        " spacing).",
    ),
    (
        "review_unavailable",
        "conflict",
        "此副本无法与原始检查同步阅片，请重新共享该检查。",
        "This copy cannot be reviewed together with its original; share the study again.",
    ),
    (
        "imaging_unavailable",
        "unavailable",
        "影像存储暂时不可用。",
        "The imaging store is not available.",
    ),
    (
        "unknown_event",
        "bad_request",
        "服务器不认识此请求。",
        "The server does not know this request.",
    ),
    (
        "media_unavailable",
        "unavailable",
        "音视频服务暂时不可用，正在重试…",
        "The audio/video service is unavailable for a moment; retrying…",
    ),
    (
        "server_busy",
        "unavailable",
        "服务器繁忙，正在自动重试…",
        "The server is busy; retrying by itself…",
    ),
    (
        "shutting_down",
        "unavailable",
        "服务器正在重启，请稍后重新进入。",
        "The server is restarting; join again in a moment.",
    ),
    # --- Made by the browser ---
    (
        "unknown",
        "client",
        "出现了未知错误，请稍后再试。",
        "Something went wrong; please try again later.",
    ),
    (
        "network_error",
        "client",
        "无法连接服务器，请检查网络后再试。",
        "Cannot reach the server; check the network and try again.",
    ),
    (
        "link_invalid",
        "client",
        "链接不完整，请使用医院发给您的完整链接。",
        "The link is incomplete. Please use the full link from the hospital.",
    ),
    ("timeout", "client", "服务器没有响应。", "The server did not answer."),
    ("connect_failed", "client", "无法连接服务器，正在重试…", "Cannot reach the server, retrying…"),
    ("media_failed", "client", "音视频连接失败。", "The audio/video connection failed."),
    ("fields_missing", "client", "请填写用户名和密码。", "Enter the username and the password."),
    ("reason_missing", "client", "请填写转诊原因。", "Enter the reason for the referral."),
    ("fields_missing_form", "client", "请填写所有必填项。", "Fill in every required field."),
    ("booking_no_time", "client", "请选择就诊时间。", "Choose a time."),
    ("upload_failed", "client", "图片上传失败，请重试。", "The picture upload failed; try again."),
]

ERRORS: Final[Mapping[str, ErrorCode]] = {
    code: ErrorCode(code, category, zh, en) for code, category, zh, en in _ROWS
}
"""Every error code, by code."""


def status_of(code: str, default: int = 409) -> int:
    """The HTTP status for ``code`` (``default`` for a code the table lacks)."""
    row = ERRORS.get(code)
    return default if row is None or row.status == 0 else row.status


def browser_module() -> str:
    """The browser's error dictionary as an ES module (served as ``/errors.js``)."""
    import json

    texts = {
        "zh-CN": {f"error.{c}": e.zh for c, e in ERRORS.items()},
        "en": {f"error.{c}": e.en for c, e in ERRORS.items()},
    }
    body = json.dumps(texts, ensure_ascii=False, indent=1, sort_keys=True)
    return (
        "// Generated from consult/error_table.py: the one error dictionary of the pages.\n"
        f"export const ERROR_STRINGS = {body};\n"
    )


def markdown() -> str:
    """``docs/errors.md``."""
    lines = [
        "# Error codes",
        "",
        "Generated from `consult/error_table.py` (`python -m consult.error_table >"
        ' docs/errors.md`); do not edit by hand. Every refusal, over REST (`{"error": {code,'
        " message}}`) and over the socket (`{ok: false, error: {code, message}}`), carries one"
        " of these codes; `message` is short English for developers, the pages show the text"
        " below (`/errors.js`). HTTP 0 marks a code the browser makes itself.",
        "",
        "| code | category | HTTP | zh | en |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in ERRORS.values():
        lines.append(f"| `{row.code}` | {row.category} | {row.status} | {row.zh} | {row.en} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
