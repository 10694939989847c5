"""Sidecars as digiKam, darktable and Lightroom Classic write them, and a semantic (RDF) view of a sidecar.

The sidecars follow files those programs wrote (namespaces, attribute vs element forms, padding, packet
wrappers); ids and hashes are made up. `rdf_facts` flattens a packet into (property path, value) facts so two
sidecars can be compared property by property, independent of layout, prefixes and attribute order.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

from tests.helpers import system_tool

# digiKam 8 (written through exiv2): person tags in dc:subject, digiKam:TagsList, lr:hierarchicalSubject and
# the Microsoft / MediaPro / ACDSee copies, a face region in MWG and Microsoft form, rating, color label.
DIGIKAM = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:mediapro="http://ns.iview-multimedia.com/mediapro/1.0/"
    xmlns:acdsee="http://ns.acdsee.com/iptc/1.0/"
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
    xmlns:MP="http://ns.microsoft.com/photo/1.2/"
    xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
    xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#"
   exif:DateTimeOriginal="2023-07-14T16:32:05"
   exif:PixelXDimension="4000"
   exif:PixelYDimension="3000"
   tiff:Make="FUJIFILM"
   tiff:Model="X-T3"
   tiff:Orientation="1"
   xmp:Rating="4"
   xmp:Label="Green"
   xmp:CreateDate="2023-07-14T16:32:05"
   xmp:MetadataDate="2024-01-02T10:00:00+01:00"
   xmpMM:DocumentID="adobe:docid:photoshop:2c8f1a4e-0000-0000-0000-000000000001"
   photoshop:City="Quiberon"
   digiKam:ColorLabel="3"
   MicrosoftPhoto:Rating="75"
   acdsee:categories="&lt;Categories&gt;&lt;Category Assigned=&quot;0&quot;&gt;Places&lt;Category Assigned=&quot;1&quot;&gt;Beach&lt;/Category&gt;&lt;/Category&gt;&lt;/Categories&gt;">
   <dc:title>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Holiday in Brittany</rdf:li>
     <rdf:li xml:lang="fr-FR">Vacances en Bretagne</rdf:li>
    </rdf:Alt>
   </dc:title>
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Anna and Rex on the Côte Sauvage — low tide</rdf:li>
    </rdf:Alt>
   </dc:description>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Beach</rdf:li>
     <rdf:li>Anna</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>Places/Beach</rdf:li>
     <rdf:li>People/Family/Anna</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <MicrosoftPhoto:LastKeywordXMP>
    <rdf:Bag>
     <rdf:li>Places/Beach</rdf:li>
     <rdf:li>People/Family/Anna</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Bag>
   </MicrosoftPhoto:LastKeywordXMP>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Places|Beach</rdf:li>
     <rdf:li>People|Family|Anna</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <mediapro:CatalogSets>
    <rdf:Bag>
     <rdf:li>Places|Beach</rdf:li>
     <rdf:li>People|Family|Anna</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Bag>
   </mediapro:CatalogSets>
   <mwg-rs:Regions rdf:parseType="Resource">
    <mwg-rs:AppliedToDimensions stDim:w="4000" stDim:h="3000" stDim:unit="pixel"/>
    <mwg-rs:RegionList>
     <rdf:Bag>
      <rdf:li>
       <rdf:Description mwg-rs:Name="Anna" mwg-rs:Type="Face">
        <mwg-rs:Area stArea:x="0.4125" stArea:y="0.3833" stArea:w="0.105" stArea:h="0.14" stArea:unit="normalized"/>
       </rdf:Description>
      </rdf:li>
     </rdf:Bag>
    </mwg-rs:RegionList>
   </mwg-rs:Regions>
   <MP:RegionInfo rdf:parseType="Resource">
    <MPRI:Regions>
     <rdf:Bag>
      <rdf:li MPReg:PersonDisplayName="Anna" MPReg:Rectangle="0.36, 0.3133, 0.105, 0.14"/>
     </rdf:Bag>
    </MPRI:Regions>
   </MP:RegionInfo>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""
    + (
        "                                                                                                    \n"
        * 20
    )
    + '<?xpacket end="w"?>'
)

# darktable 4.6: develop history as an rdf:Seq of structs in attribute form, hashes, its own tags in
# lr:hierarchicalSubject (darktable|...), person tags, an XML declaration and no packet wrapper.
DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
   exif:DateTimeOriginal="2023:07:14 16:32:05.000"
   xmp:Rating="3"
   xmpMM:DerivedFrom="DSCF0042.RAF"
   darktable:import_timestamp="63826011125000000"
   darktable:change_timestamp="63826022233000000"
   darktable:export_timestamp="-1"
   darktable:print_timestamp="-1"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="3"
   darktable:iop_order_version="4"
   darktable:history_basic_hash="a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
   darktable:history_auto_hash="b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6"
   darktable:history_current_hash="c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7">
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="rawprepare"
      darktable:enabled="1"
      darktable:modversion="2"
      darktable:params="00000000000000000000000000000000000000000000000000000000ff3f0000ff3f0000"
      darktable:multi_name=""
      darktable:multi_name_hand_edited="0"
      darktable:multi_priority="0"
      darktable:blendop_version="14"
      darktable:blendop_params="gz08eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfOygYtaaaoDh7ZGQGgGHLBjXXjQAGQA="/>
     <rdf:li
      darktable:num="1"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000000000403333333f00000000000000000000803f"
      darktable:multi_name="scene-referred default"
      darktable:multi_name_hand_edited="0"
      darktable:multi_priority="0"
      darktable:blendop_version="14"
      darktable:blendop_params="gz08eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfOygYtaaaoDh7ZGQGgGHLBjXXjQAGQA="/>
     <rdf:li
      darktable:num="2"
      darktable:operation="filmicrgb"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="gz11eJxjYGiwZ2DIsQcRDA1ODOgAAB0yAco="
      darktable:multi_name=""
      darktable:multi_name_hand_edited="0"
      darktable:multi_priority="0"
      darktable:blendop_version="14"
      darktable:blendop_params="gz08eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfOygYtaaaoDh7ZGQGgGHLBjXXjQAGQA="/>
    </rdf:Seq>
   </darktable:history>
   <dc:creator>
    <rdf:Seq>
     <rdf:li>Jane Doe</rdf:li>
    </rdf:Seq>
   </dc:creator>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>sunset</rdf:li>
     <rdf:li>lighthouse</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>darktable|format|raf</rdf:li>
     <rdf:li>darktable|changed</rdf:li>
     <rdf:li>places|coast|lighthouse</rdf:li>
     <rdf:li>sunset</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

# Lightroom Classic 12 (NAME.xmp beside a RAW): no packet wrapper, crs:* develop settings with a tone curve
# and a nested crs:Look struct, xmpMM:History events, hierarchical keywords, a label and GPS.
LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:aux="http://ns.adobe.com/exif/1.0/aux/"
    xmlns:exifEX="http://cipa.jp/exif/1.0/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
   xmp:ModifyDate="2023-07-20T10:11:12+02:00"
   xmp:CreateDate="2023-07-14T16:32:05.00"
   xmp:CreatorTool="Adobe Photoshop Lightroom Classic 12.4 (Macintosh)"
   xmp:MetadataDate="2023-07-20T10:11:12+02:00"
   xmp:Rating="5"
   xmp:Label="Red"
   tiff:Make="Canon"
   tiff:Model="Canon EOS 5D Mark IV"
   exif:ExposureTime="1/250"
   exif:FNumber="8/1"
   exif:FocalLength="50/1"
   exif:GPSLatitude="47,28.8431N"
   exif:GPSLongitude="3,7.5512W"
   aux:Lens="EF24-105mm f/4L IS USM"
   exifEX:LensModel="EF24-105mm f/4L IS USM"
   photoshop:DateCreated="2023-07-14T16:32:05.00"
   xmpMM:DocumentID="xmp.did:6a1b2c3d-0000-4000-8000-000000000042"
   xmpMM:OriginalDocumentID="6A1B2C3D00004000800000000000042"
   xmpMM:InstanceID="xmp.iid:6a1b2c3d-0000-4000-8000-000000000043"
   crs:Version="15.4"
   crs:ProcessVersion="11.0"
   crs:WhiteBalance="As Shot"
   crs:Temperature="5200"
   crs:Tint="+10"
   crs:Exposure2012="+0.35"
   crs:Contrast2012="+12"
   crs:Highlights2012="-40"
   crs:Shadows2012="+25"
   crs:Vibrance="+8"
   crs:CameraProfile="Adobe Standard"
   crs:HasSettings="True"
   crs:HasCrop="False"
   crs:AlreadyApplied="False">
   <dc:creator>
    <rdf:Seq>
     <rdf:li>Jane Doe</rdf:li>
    </rdf:Seq>
   </dc:creator>
   <dc:rights>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">© 2023 Jane Doe</rdf:li>
    </rdf:Alt>
   </dc:rights>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Brittany</rdf:li>
     <rdf:li>holiday</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <xmpMM:History>
    <rdf:Seq>
     <rdf:li
      stEvt:action="derived"
      stEvt:parameters="converted from image/x-canon-cr2 to image/jpeg"/>
     <rdf:li
      stEvt:action="saved"
      stEvt:instanceID="xmp.iid:6a1b2c3d-0000-4000-8000-000000000043"
      stEvt:when="2023-07-20T10:11:12+02:00"
      stEvt:softwareAgent="Adobe Photoshop Lightroom Classic 12.4 (Macintosh)"
      stEvt:changed="/metadata"/>
    </rdf:Seq>
   </xmpMM:History>
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>64, 58</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
   <crs:Look>
    <rdf:Description
     crs:Name="Adobe Color"
     crs:Amount="1"
     crs:UUID="B952C231111CD8E0ECCF14B86BAA7077"
     crs:SupportsAmount="false"
     crs:SupportsMonochrome="false"
     crs:SupportsOutputReferred="false">
     <crs:Group>
      <rdf:Alt>
       <rdf:li xml:lang="x-default">Profiles</rdf:li>
      </rdf:Alt>
     </crs:Group>
     <crs:Parameters>
      <rdf:Description
       crs:Version="15.4"
       crs:ProcessVersion="11.0"
       crs:ConvertToGrayscale="False"
       crs:CameraProfile="Adobe Standard"
       crs:LookTable="E1095149FDB39D7A057BAB208837E2E1"/>
     </crs:Parameters>
    </rdf:Description>
   </crs:Look>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Places|France|Brittany</rdf:li>
     <rdf:li>holiday</rdf:li>
     <rdf:li>Animals|dog</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

SIDECARS = {"digikam": DIGIKAM, "darktable": DARKTABLE, "lightroom": LIGHTROOM}

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
KEYWORD_PROPERTIES = {  # the properties tagan writes; every other one must survive untouched
    "{http://purl.org/dc/elements/1.1/}subject",
    "{http://ns.adobe.com/lightroom/1.0/}hierarchicalSubject",
    "{http://www.digikam.org/ns/1.0/}TagsList",
}
TAGAN_NS = "https://github.com/tagan/xmp/1.0/"


def _r(name: str) -> str:
    return f"{{{RDF}}}{name}"


def _facts(node: ET.Element, path: str, out: Counter) -> None:
    """Facts of one property element: its value (literal, array, struct), qualifiers, nested properties."""
    for key, value in node.attrib.items():  # attribute-form struct fields and qualifiers (xml:lang)
        if key == XML_LANG:
            out[(path + "@lang", value)] += 1
        elif not key.startswith(f"{{{RDF}}}"):
            out[(f"{path}/{key}", value)] += 1
    children = list(node)
    if not children:
        if node.get(_r("resource")) is not None:
            out[(path, "<" + node.get(_r("resource")) + ">")] += 1
        elif not node.attrib or (node.text or "").strip():
            out[(path, node.text or "")] += 1
        return
    for child in children:
        if child.tag in (_r("Bag"), _r("Alt")):  # unordered arrays: a multiset of items
            out[(path, child.tag.split("}")[1])] += 1
            for li in child:
                _facts(li, f"{path}[]", out)
        elif child.tag == _r("Seq"):
            out[(path, "Seq")] += 1
            for i, li in enumerate(child):
                _facts(li, f"{path}[{i}]", out)
        elif child.tag == _r("Description"):
            _facts(child, path, out)
        else:
            _facts(child, f"{path}/{child.tag}", out)


def rdf_facts(text: str | bytes) -> Counter:
    """Every (property path, value) fact of an XMP packet, as a multiset; independent of layout and prefixes."""
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig")
    root = ET.fromstring(text.lstrip("\ufeff"))
    out: Counter = Counter()
    for desc in root.iter(_r("Description")):
        if desc.get(_r("about")) is None:  # nested struct descriptions are reached from their property
            continue
        _facts(desc, "", out)
    return out


def without(facts: Counter, properties: set[str] = KEYWORD_PROPERTIES, ns: str = TAGAN_NS) -> Counter:
    """The facts that are not about `properties` nor in namespace `ns` (what tagan must never change)."""
    return Counter(
        {
            k: v
            for k, v in facts.items()
            if k[0].split("[")[0].lstrip("/") not in properties and ns not in k[0]
        }
    )


def only(facts: Counter, prop: str) -> list[str]:
    """The item values of one top-level array property, sorted (the keywords of dc:subject, say)."""
    return sorted(
        v for (k, val), n in facts.items() for v in [val] * n if k.startswith(f"/{prop}[") and k.endswith("]")
    )


def exiftool(path: Path, *tags: str) -> dict:
    """What an independent XMP reader (exiftool) sees in a sidecar, structures kept."""
    args = list(tags) or ["-XMP:all"]
    out = subprocess.run(
        [system_tool("exiftool"), "-j", "-struct", "-n", *args, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)[0]


def as_list(value: str | list[str] | None) -> list[str]:
    """exiftool gives a one-item list as a bare value."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
