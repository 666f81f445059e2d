//! Japanese titles of the SigmaHQ rules Mamori embeds (`rules/sigmahq/`), by rule id. SigmaHQ's
//! files are kept as published (DRL 1.1), so their `title_ja` lives here and is added when a
//! document with one of these ids is parsed, wherever it is loaded from (the embedded copies or
//! a SigmaHQ checkout given with `--rules`). A document's own `title_ja` wins.

/// (SigmaHQ rule id, Japanese title).
const TITLES: &[(&str, &str)] = &[
    (
        "8fbf3271-1ef6-4e94-8210-03c2317947f6",
        "認証情報ダンプツールが作成したファイル",
    ),
    (
        "a5a2d357-1ab8-4675-a967-ef9990a59391",
        "LSASS プロセスのメモリダンプファイル",
    ),
    ("0b8baa3f-575c-46ee-8715-d6f28cc7d33c", "NTDS.DIT の作成"),
    (
        "4e87b8e2-2ee9-4b2a-a715-4727d297ece0",
        "SAM データベースのダンプの疑い",
    ),
    (
        "52753ea4-b3a0-4365-910d-36cff487b789",
        "正規 RDP セッションの乗っ取りによる横展開",
    ),
    (
        "b1bd3a59-c1fd-4860-9f40-4dd161a7d1f5",
        "ハッキングツール HandleKatz による LSASS ハンドルの複製",
    ),
    (
        "a49fa4d5-11db-418c-8473-1e014a8dd462",
        "comsvcs.dll による LSASS メモリダンプ",
    ),
    (
        "9bd012ee-0dff-44d7-84a0-aa698cfd87a3",
        "名前に dump を含むツールによる LSASS メモリへのアクセス",
    ),
    (
        "5ef9853e-4d0e-4a70-846f-a9ca37d876da",
        "LSASS を介した認証情報ダンプの疑い",
    ),
    (
        "a18dd26b-6450-46de-8c91-9659150cf088",
        "LSASS への不審なアクセス権（GrantedAccess）要求",
    ),
    (
        "9f5c1d59-33be-4e60-bcab-85d2f566effd",
        "dbgcore/dbghelp DLL を使った LSASS への不審なプロセスアクセス",
    ),
    (
        "c73124a7-3e89-44a3-bdc1-25fe4df754b1",
        "cmd.exe によるボリュームシャドウコピーからのコピー",
    ),
    (
        "e7be6119-fc37-43f0-ad4f-1f3f99be2f9f",
        "認証情報を含む機密ファイルのコピー",
    ),
    (
        "058f4380-962d-40a5-afce-50207d36d7e2",
        "ハッキングツール CrackMapExec の実行パターン",
    ),
    (
        "10c14723-61c7-4c75-92ca-9af245723ad2",
        "ハッキングツール Impacket による横展開の疑い",
    ),
    (
        "4627c6ae-6899-46e2-aa0c-6ebcb1becd19",
        "ハッキングツール Impacket の実行",
    ),
    (
        "a642964e-bead-4bed-8910-1bb4d63e3b4d",
        "ハッキングツール Mimikatz の実行",
    ),
    (
        "7ec2c172-dceb-4c10-92c9-87c1881b7e18",
        "ハッキングツール Rubeus の実行",
    ),
    (
        "c8da0dfd-4ed0-4b68-962d-13c9c884384e",
        "LSASS プロセスの複製による認証情報ダンプの疑い",
    ),
    (
        "f1f3bf22-deb2-418d-8cce-e1a45e46a5bd",
        "MMC20（DCOM）による横展開",
    ),
    (
        "2afafd61-6aae-4df4-baed-139fa1f4c345",
        "Active Directory 診断ツール（ntdsutil.exe）の実行",
    ),
    (
        "fd877b94-9bb5-4191-bb25-d79cbd93c167",
        "reg.exe による機密レジストリハイブのダンプ",
    ),
    (
        "646ea171-dded-4578-8a4d-65e9822892e3",
        "comsvcs.dll によるプロセスメモリダンプ",
    ),
    (
        "ffa6861c-4461-4f59-8a41-578c39f3f23e",
        "コマンドライン中の LSASS ダンプのキーワード",
    ),
    (
        "8bc64091-6875-4881-aaf9-7bd25b5dda08",
        "NTDS.DIT 持ち出しの不審なプロセスパターン",
    ),
    (
        "ab9e3b40-0c85-4ba1-aede-455d226fd124",
        "ローカル管理共有への不審なリダイレクト",
    ),
    (
        "f57f8d16-1f39-4dcb-a604-6c73d9b54b3d",
        "ボリュームシャドウコピー経由の機密ファイルへのアクセス",
    ),
    (
        "5afee48e-67dd-4e03-a783-f74259dcf998",
        "Procdump による LSASS プロセスダンプの疑い",
    ),
    (
        "8202070f-edeb-4d31-a010-a26c72ac5600",
        "Web サーバープロセスが起動した不審なプロセス",
    ),
    (
        "79df3f68-dccb-48e9-9171-b75cbc37c51d",
        "Windows リモートシェル（WinRS）による横展開の疑い",
    ),
    (
        "8a582fe2-0882-4b89-a82a-da6b2dc32937",
        "WmiPrvSE の不審な子プロセス",
    ),
    (
        "583aa0a2-30b1-4d62-8bf3-ab73689efe6c",
        "Java ペイロードの文字列",
    ),
    (
        "412d55bc-7737-4d25-9542-5b396867ce55",
        "JNDIExploit のパターン",
    ),
    (
        "ada3bc4f-f0fd-42b9-ba91-e105e8af7342",
        "サーバーサイドテンプレートインジェクションの文字列",
    ),
    (
        "2ea44a60-cfda-11ea-87d0-0242ac130003",
        "Web ログで検知した Web シェル reGeorg",
    ),
    (
        "17d619c1-e020-4347-957e-1d1207455c93",
        "コンピューター以外のアカウントによる Active Directory の複製（DCSync の兆候）",
    ),
    (
        "252902e3-5830-4cf6-bf21-c22083dfd5cf",
        "Impacket secretsdump によるリモート操作の疑い",
    ),
    (
        "d04ae2b8-ad54-4de0-bd87-4bc1da66aa59",
        "Kerberoasting の初期クエリ",
    ),
    (
        "3e2f1b2c-4d5e-11ee-be56-0242ac120002",
        "Kerberos TGT 要求による AS-REP Roasting の疑い",
    ),
    (
        "8eef149c-bd26-49f2-9e5a-9b00e3af499b",
        "Pass the Hash 攻撃の痕跡",
    ),
    (
        "f8748f2c-89dc-4d95-afb0-5a2dfdbad332",
        "SAM レジストリハイブのハンドル要求",
    ),
    (
        "4a1b6da0-d94f-4fc3-98fc-2d9cb9e5ee76",
        "LSASS への不審なアクセスマスク要求",
    ),
];

/// The Japanese title Mamori keeps for a SigmaHQ rule id.
pub fn title_ja(id: &str) -> Option<&'static str> {
    TITLES.iter().find(|(i, _)| *i == id).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_titles_present() {
        let mut seen = std::collections::HashSet::new();
        for (id, t) in TITLES {
            assert!(seen.insert(*id), "duplicate id {id}");
            assert!(!t.trim().is_empty(), "{id}");
        }
        assert_eq!(
            title_ja("a642964e-bead-4bed-8910-1bb4d63e3b4d"),
            Some("ハッキングツール Mimikatz の実行")
        );
        assert_eq!(title_ja("not-an-id"), None);
    }
}
